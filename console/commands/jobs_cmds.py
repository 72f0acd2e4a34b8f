"""`forecast-console run | jobs | attach | cancel | retry`: the job queue, headless.

Every command is a client of the workspace's engine service (`forecast-console engine`, started on
demand, the only store writer), through the one job client (engine.client); so a command behaves
the same with or without a console open. `jobs` lists the engine's view when an engine runs or the
store has active jobs (a new engine first recovers them), else the store's records.

Ctrl-C while following detaches: the job keeps running in the service, and
`forecast-console attach ID` follows it again. The follow loop lives in `console.commands.follow`,
shared with `train` and the evaluation commands.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.commands import follow
from engine.jobs import JobDir
from engine.models import MODELS
from engine.state import ACTIVE_STATES, FINAL_STATES

if TYPE_CHECKING:
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


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.jobs import KINDS

    p = subparsers.add_parser("run", help="queue a job and follow its progress (Ctrl-C detaches)",
                              description="Validate and queue one job, then follow it. Ctrl-C detaches; "
                              "the job keeps running (re-attach with `forecast-console attach ID`).")
    p.add_argument("kind", choices=KINDS, help="what to run")
    p.add_argument("--stocks", nargs="+", required=True, metavar="SYMBOL", help="symbols (one job, many symbols)")
    p.add_argument("--model", default=None, help=f"model name ({', '.join(MODELS)})")
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
    if not JobDir.of(ws, job_id).spec.is_file():
        raise CliError(f"no such job: {job_id} in {ws}")


def _stored(ws: Path, job_id: str | None = None) -> list[dict[str, Any]]:
    """Job records as the store has them (read-only; a corrupt store is a one-line error)."""
    from store import Store

    if not (ws / "store.json").exists():
        return []
    with Store.open(ws, readonly=True) as store:
        if job_id is not None:
            rec = store.get_job(job_id)
            return [rec] if rec else []
        return store.jobs()


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
    return follow.submit_and_follow(ws, spec, args.detach, args.cpu_slots)


def _fmt_state(rec: dict[str, Any] | JobState) -> list[str]:
    d = rec if isinstance(rec, dict) else rec.to_record()
    done, total = d.get("progress_done") or 0, d.get("progress_total") or 0
    prog = f"{done:g}/{total:g}" if total else "-"
    syms = d.get("symbols") or []
    sym = ",".join(syms[:3]) + (f"+{len(syms) - 3}" if len(syms) > 3 else "")
    return [d["id"], d.get("kind", ""), sym, d.get("model") or "-", d.get("state", "?"),
            str(d.get("priority", 0)), str(d.get("attempt", 1)), prog, d.get("device") or "-",
            (d.get("warning") or d.get("reason") or "")[:60]]


def cmd_jobs(args: argparse.Namespace) -> int:
    from console.cli import CliError
    from engine.client import JobClient

    ws = _workspace()
    if ws.exists() and not ws.is_dir():
        raise CliError(f"workspace {ws} exists and is not a folder")
    stored = _stored(ws)
    if not stored and not (ws / "store.json").exists():
        print(f"no jobs yet in {ws}")
        return 0
    jc = JobClient(ws)
    # The engine's view when one runs, or when the store has jobs that were active (a new engine
    # recovers them first: ended ones get their results and final state recorded).
    if jc.running() or any(r.get("state") in ACTIVE_STATES for r in stored):
        recs = jc.jobs()
    else:
        recs = stored
    if not args.all:
        recs = [r for r in recs if r.get("state") in ACTIVE_STATES]
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
    return follow.follow(ws, args.job_id)


def cmd_cancel(args: argparse.Namespace) -> int:
    from console.cli import CliError
    from engine.client import JobClient

    ws = _workspace()
    _require_job(ws, args.job_id)
    for rec in _stored(ws, args.job_id):
        if rec.get("state") in FINAL_STATES:
            raise CliError(f"job {args.job_id} is already {rec['state']}")
    jc = JobClient(ws)
    jc.cancel(args.job_id)
    try:
        rec = jc.wait(args.job_id, timeout=30)
    except TimeoutError:
        print(f"cancel of {args.job_id} requested; it has not ended yet")
        return 1
    print(f"job {args.job_id} {rec['state']}" + (f": {rec['reason']}" if rec.get("reason") else ""))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from engine.client import JobClient

    ws = _workspace()
    _require_job(ws, args.job_id)
    jc = JobClient(ws)
    rec = jc.retry(args.job_id, settle=args.detach)
    print(f"queued {rec['id']} (attempt {rec.get('attempt')} of {args.job_id})", flush=True)
    if args.detach:
        return 0
    state, _ = follow.follow_state(jc, rec["id"], submitted=rec)
    return follow.exit_code(state)
