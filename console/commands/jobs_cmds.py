"""`forecast-console run | jobs | attach | cancel | retry`: the job queue, headless.

Who writes the store: only one process may (the store's workspace lock). A command first tries
to open the store for writing; if that works it runs its own Engine (which also recovers and
continues any queued or running jobs of the workspace) and follows the job through the engine's
updates. If a running console holds the lock, the command does not touch the store: it submits
through the spool (`jobs/<id>/spec.json`, then the marker `jobs/inbox/<id>`; cancel is
`jobs/inbox/<id>.cancel`), which the console's engine picks up within a tick, and follows the
job by tailing its `events.jsonl` read-only.

Ctrl-C while following detaches: the job keeps running in its own session, and
`forecast-console attach ID` follows it again.

The submit/follow plumbing lives in `console.commands.follow`, shared with `train` and the
evaluation commands (one code path, so they cannot drift apart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.commands import follow

if TYPE_CHECKING:
    from engine.controller import Engine
    from engine.state import JobState


def _kv(text: str) -> tuple[str, Any]:
    """`k=v` with v parsed as JSON when it is JSON (numbers, lists, true), else kept as a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    k = k.strip()
    if not k:
        raise argparse.ArgumentTypeError(f"empty key in {text!r}")
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if v < 0 or v != v:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from engine.jobs import KINDS

    p = subparsers.add_parser("run", help="queue a job and follow its progress (Ctrl-C detaches)",
                              description="Validate and queue one job, then follow it. Ctrl-C detaches; "
                              "the job keeps running (re-attach with `forecast-console attach ID`).")
    p.add_argument("kind", choices=KINDS, help="what to run")
    p.add_argument("--stocks", nargs="+", required=True, metavar="SYMBOL", help="symbols (one job, many symbols)")
    p.add_argument("--model", default=None, help="model name (naive, toto, kronos, chronos2)")
    p.add_argument("--param", action="append", type=_kv, default=[], metavar="KEY=VALUE",
                   help="task parameter; VALUE is JSON when it parses (e.g. horizon=64, epochs=3)")
    p.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    p.add_argument("--vram", type=_nonneg_float, default=0.0, metavar="GB", help="estimated GPU memory")
    p.add_argument("--gpus", type=_nonneg_float, default=None, help="GPUs wanted (default 1 if --vram > 0, else 0)")
    p.add_argument("--detach", action="store_true", help="queue and return at once")
    p.add_argument("--cpu-slots", type=int, default=2,
                   help="concurrent CPU jobs for an engine started here (default 2)")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("jobs", help="list jobs (queued and running; --all for every job)",
                              description="List the workspace's jobs. Jobs that ended while nothing was "
                              "following them (after a detach) are recorded first, unless a running "
                              "console owns the workspace (it keeps the records current).")
    p.add_argument("--all", action="store_true", help="include finished jobs")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.set_defaults(func=cmd_jobs)

    p = subparsers.add_parser("attach", help="follow a job's progress again (Ctrl-C detaches)",
                              description="Follow a queued or running job again; a finished job prints "
                              "its result. Exit status 0 when it succeeded (or on detach), 1 otherwise.")
    p.add_argument("job_id", help="job id, as printed by `run` and listed by `jobs`")
    p.set_defaults(func=cmd_attach)

    p = subparsers.add_parser("cancel", help="cancel a queued or running job",
                              description="Cancel a queued job, or stop a running one (SIGTERM to its "
                              "process group, SIGKILL after the grace period).")
    p.add_argument("job_id", help="job id, as listed by `jobs`")
    p.set_defaults(func=cmd_cancel)

    p = subparsers.add_parser("retry", help="run a finished job again (an interrupted one resumes)",
                              description="Queue a new attempt of a finished job with the same spec "
                              "(an interrupted job resumes from its checkpoint), then follow it.")
    p.add_argument("job_id", help="id of a finished job, as listed by `jobs --all`")
    p.add_argument("--detach", action="store_true", help="queue and return at once")
    p.set_defaults(func=cmd_retry)


# ---- shared plumbing (console/commands/follow.py; the old names stay for callers and tests) ------
def _workspace() -> Path:
    from engine import paths

    return paths.workspace_dir()


def _require_job(ws: Path, job_id: str) -> None:
    """Refuse an id that is not a job of this workspace before anything is opened or created.

    Every job has `jobs/<id>/spec.json` from the moment it is queued; an id is one path component,
    so `../x` can neither name nor create anything outside the jobs folder.
    """
    from console.cli import CliError
    from store.workspace import check_id

    check_id("job", job_id)  # StoreError (a ValueError): one-line error, exit 2
    if not (ws / "jobs" / job_id / "spec.json").is_file():
        raise CliError(f"no such job: {job_id} in {ws}")


_open_writer = follow.open_writer
_Printer = follow.Printer
_detach_hint = follow.detach_hint
_follow_engine = follow.follow_engine
_stored_record = follow.stored_record
_follow_readonly = follow.follow_readonly
_make_engine = follow.make_engine
_own = follow.own
_own_then_detach = follow.own_then_detach
_submit_or_spool = follow.submit_and_follow


# ---- commands ----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from engine import paths
    from engine.data import check_csv, list_symbols
    from engine.jobs import JobSpec, Resources

    ws = _workspace()
    dirs = paths.data_dirs(ws)
    infos = {i.symbol: i for i in list_symbols(dirs)}
    known = list(infos)
    gpus = args.gpus if args.gpus is not None else (1.0 if args.vram > 0 else 0.0)
    spec = JobSpec.create(args.kind, args.stocks, model=args.model, params=dict(args.param),
                          priority=args.priority, resources=Resources(gpus=gpus, vram_gb=args.vram),
                          known_symbols=known)
    for sym in spec.symbols:
        # A file that cannot be a series (not text, no time/close column, no rows) is the user's
        # input error: say FILE:LINE: reason now, queue nothing. Only the header and the row count
        # are read here; the worker validates every value (and fails the job naming the row).
        check_csv(infos[sym].path, sym)
    return _submit_or_spool(ws, spec, args.detach, args.cpu_slots)


def _fmt_state(rec: dict[str, Any] | JobState) -> list[str]:
    d = rec if isinstance(rec, dict) else rec.to_record()
    done, total = d.get("progress_done") or 0, d.get("progress_total") or 0
    prog = f"{done:g}/{total:g}" if total else "-"
    syms = d.get("symbols") or []
    sym = ",".join(syms[:3]) + (f"+{len(syms) - 3}" if len(syms) > 3 else "")
    return [d["id"], d.get("kind", ""), sym, d.get("model") or "-", d.get("state", "?"),
            str(d.get("priority", 0)), str(d.get("attempt", 1)), prog, d.get("device") or "-",
            (d.get("warning") or d.get("reason") or "")[:60]]


def _reconcile(ws: Path) -> None:
    """Record jobs that ended while no engine watched them (a detached `run`), so `jobs` is current.

    Only when no console owns the workspace (a running console keeps the records current itself):
    an engine here does its start-up recovery (finished → their result and state recorded, dead
    without an exit status → interrupted) and stops before its first tick, so it launches nothing.
    """
    store = _open_writer(ws)
    if store is None:
        return

    async def recover() -> None:
        eng = _make_engine(ws, store, validate_symbols=False)
        await eng.start()
        await eng.stop()

    try:
        asyncio.run(recover())
    finally:
        store.close()


def cmd_jobs(args: argparse.Namespace) -> int:
    from store import Store

    ws = _workspace()
    if ws.exists() and not ws.is_dir():
        from console.cli import CliError

        raise CliError(f"workspace {ws} exists and is not a folder")
    if not (ws / "store.json").exists():
        print(f"no jobs yet in {ws}")
        return 0
    with Store.open(ws, readonly=True) as store:
        stale = bool(store.jobs(state="running"))
    if stale:
        _reconcile(ws)
    with Store.open(ws, readonly=True) as store:
        recs = store.jobs() if args.all else store.jobs(state=("queued", "running"))
    recs.sort(key=lambda r: (r.get("created_at") or 0, r["id"]))
    if args.json:
        print(json.dumps(recs, indent=1, default=str))
        return 0
    if not recs:
        print("no queued or running jobs" + ("" if args.all else " (--all shows finished ones)"))
        return 0
    head = ["ID", "KIND", "SYMBOLS", "MODEL", "STATE", "PRIO", "TRY", "PROGRESS", "DEVICE", "NOTE"]
    rows = [head] + [_fmt_state(r) for r in recs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    ws = _workspace()
    _require_job(ws, args.job_id)
    store = _open_writer(ws)
    if store is None:
        return _follow_readonly(ws, args.job_id)
    try:
        return asyncio.run(_own(ws, store, lambda eng: args.job_id, follow=True, validate_symbols=False))
    finally:
        store.close()


def cmd_cancel(args: argparse.Namespace) -> int:
    from console.cli import CliError
    from engine.controller import spool_cancel

    ws = _workspace()
    _require_job(ws, args.job_id)
    store = _open_writer(ws)
    if store is None:
        from store import Store

        with Store.open(ws, readonly=True) as ro:
            rec = ro.get_job(args.job_id) or {}
        if rec.get("state") in ("succeeded", "failed", "cancelled", "interrupted"):
            raise CliError(f"job {args.job_id} is already {rec['state']}")
        spool_cancel(ws, args.job_id)
        print(f"cancel of {args.job_id} handed to the running console")
        return 0

    async def go() -> int:
        eng = _make_engine(ws, store, validate_symbols=False)  # nothing is submitted here
        await eng.start()
        try:
            st = eng.job(args.job_id)
            if st is None:
                raise CliError(f"no such job: {args.job_id}")
            eng.cancel(args.job_id)
            deadline = time.monotonic() + eng.cancel_grace_s + 3
            while not st.finished and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            print(f"job {args.job_id} {st.state}" + (f": {st.reason}" if st.reason else ""))
            return 0 if st.finished else 1
        finally:
            await eng.stop()

    try:
        return asyncio.run(go())
    finally:
        store.close()


def cmd_retry(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from console.cli import CliError
    from engine.jobs import JobSpec

    ws = _workspace()
    _require_job(ws, args.job_id)
    store = _open_writer(ws)
    if store is None:
        from store import Store

        spec_file = ws / "jobs" / args.job_id / "spec.json"
        with Store.open(ws, readonly=True) as ro:
            rec = ro.get_job(args.job_id) or {}
        if rec.get("state") not in ("succeeded", "failed", "cancelled", "interrupted"):
            raise CliError(f"job {args.job_id} is {rec.get('state', 'unknown')}; only finished jobs can be retried")
        spec = JobSpec.from_json(spec_file.read_text(encoding="utf-8")).retry()
        if rec.get("state") == "interrupted":
            spec = replace(spec, params={**spec.params, "resume": True})
        return _submit_or_spool(ws, spec, args.detach)
    try:
        def action(eng: Engine) -> str:
            st = eng.retry(args.job_id)
            print(f"queued {st.id} (attempt {st.attempt} of {args.job_id})", flush=True)
            return st.id

        if args.detach:
            return asyncio.run(_own_then_detach(ws, store, action, 2))
        return asyncio.run(_own(ws, store, action, follow=True))
    finally:
        store.close()
