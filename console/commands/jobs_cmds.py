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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.controller import Engine
    from engine.jobs import JobSpec
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


# ---- shared plumbing ---------------------------------------------------------------------------
def _workspace() -> Path:
    from engine import paths

    return paths.workspace_dir()


def _open_writer(ws: Path) -> Any | None:
    """The store opened for writing, or None when a running console holds the lock."""
    from store import Store, StoreLocked

    try:
        return Store.open(ws)
    except StoreLocked:
        return None


class _Printer:
    """Rich progress bar on a terminal, plain throttled lines otherwise (logs, CI)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.tty = sys.stdout.isatty()
        self._last_line = 0.0
        self._progress: Any = None
        self._task: Any = None
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
            self._progress.start()
            self._task = self._progress.add_task(job_id[-26:], total=None, info="")

    def say(self, msg: str) -> None:
        if self._progress is not None:
            self._progress.console.print(msg)
        else:
            print(msg, flush=True)

    def progress(self, done: float, total: float, stage: str | None, info: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total or None,
                                  info=" ".join(x for x in (stage or "", info) if x))
            return
        now = time.monotonic()
        if now - self._last_line >= 0.5 or (total and done >= total):
            self._last_line = now
            pct = f" {100 * done / total:5.1f}%" if total else ""
            extra = " ".join(x for x in (stage or "", info) if x)
            print(f"[{self.job_id}] progress {done:g}/{total:g}{pct} {extra}".rstrip(), flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


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


def _detach_hint(job_id: str) -> str:
    return f"detached; job {job_id} keeps running. Re-attach with: forecast-console attach {job_id}"


def _final(st_state: str, reason: str | None, job_id: str, pr: _Printer) -> int:
    pr.close()
    msg = f"job {job_id} {st_state}" + (f": {reason}" if reason else "")
    print(msg, flush=True)
    return 0 if st_state == "succeeded" else 1


async def _follow_engine(eng: Engine, job_id: str) -> int:
    """Follow through the engine's updates until the job ends or Ctrl-C (detach)."""
    st = eng.job(job_id)
    if st is None:
        from console.cli import CliError

        raise CliError(f"no such job: {job_id}")
    q = eng.subscribe()
    detach = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, detach.set)
    pr = _Printer(job_id)
    what = " ".join(x for x in (st.kind, " ".join(st.symbols), st.model or "") if x)
    pr.say(f"job {job_id}: {what} — {st.state}")
    try:
        while True:
            if detach.is_set():
                pr.close()
                print(_detach_hint(job_id), flush=True)
                return 0
            if st.finished:
                # The engine publishes a job's last events and its end in the same tick: print
                # what is still queued (final warnings, the error) before the verdict.
                if q.empty():
                    break
                u = q.get_nowait()
            else:
                try:
                    u = await asyncio.wait_for(q.get(), 0.2)
                except TimeoutError:
                    continue
            if u.job_id != job_id:
                continue
            if u.kind == "progress":
                loss = f"loss {st.last_train_loss:.4g}" if st.last_train_loss is not None else ""
                pr.progress(st.progress_done, st.progress_total, st.stage, loss)
            elif u.kind == "log":
                pr.say(f"  {u.data.get('level', 'info')}: {u.data.get('msg', '')}")
            elif u.kind == "state" and u.data.get("warning"):
                pr.say(f"  warning: {u.data['warning']}")
        if st.result_summary:
            pr.say("result: " + json.dumps(st.result_summary, default=str)[:2000])
        return _final(st.state, st.reason, job_id, pr)
    finally:
        pr.close()
        loop.remove_signal_handler(signal.SIGINT)
        eng.unsubscribe(q)


def _stored_record(ws: Path, job_id: str) -> dict[str, Any]:
    """The job's record as the store has it (read-only; {} when there is none or it cannot be read)."""
    from store import Store, StoreError

    if not (ws / "store.json").exists():
        return {}
    try:
        with Store.open(ws, readonly=True) as ro:
            return ro.get_job(job_id) or {}
    except StoreError:
        return {}


def _follow_readonly(ws: Path, job_id: str, poll: float = 0.2) -> int:
    """Follow a job owned by another process's engine by tailing its event file (no writes)."""
    from engine.backends.local import EXIT_FILE, LocalBackend, read_json
    from engine.events import read_events
    from engine.jobs import JobSpec
    from engine.state import JobState, apply_event

    job_dir = ws / "jobs" / job_id
    spec_file = job_dir / "spec.json"
    if not spec_file.exists():
        from console.cli import CliError

        raise CliError(f"no such job: {job_id} (no {spec_file})")
    st = JobState.from_spec(JobSpec.from_json(spec_file.read_text(encoding="utf-8")))
    backend = LocalBackend()
    pr = _Printer(job_id)
    pr.say(f"following {job_id} read-only (a running console owns the workspace)")
    offset = 0
    has_result = False
    try:
        while True:
            rejected = job_dir / "rejected.txt"
            if rejected.exists():
                pr.close()
                print(rejected.read_text(encoding="utf-8").strip(), file=sys.stderr)
                return 2
            ended = (job_dir / EXIT_FILE).exists() or (
                (job_dir / "pid.json").exists() and backend.attach(job_id, job_dir) is None)
            chunk = read_events(job_dir / "events.jsonl", offset)
            offset = chunk.offset
            for ev in chunk.events:
                for u in apply_event(st, ev):
                    if u.kind == "progress":
                        pr.progress(st.progress_done, st.progress_total, st.stage)
                    elif u.kind == "log":
                        pr.say(f"  {u.data.get('level', 'info')}: {u.data.get('msg', '')}")
                    elif u.kind == "result":
                        has_result = True
            if ended:
                rec = _stored_record(ws, job_id)
                if rec.get("state") in ("succeeded", "failed", "cancelled", "interrupted"):
                    # The owning engine already decided (e.g. "interrupted" after a crash): same verdict.
                    return _final(rec["state"], rec.get("reason"), job_id, pr)
                data = read_json(job_dir / EXIT_FILE)
                code = data.get("code") if data else None
                if code == 0 and has_result:
                    return _final("succeeded", None, job_id, pr)
                if code == 143:
                    return _final("cancelled", st.reason, job_id, pr)
                why = st.reason or ("process died (no exit status)" if code is None else f"exit code {code}")
                return _final("failed", why, job_id, pr)
            time.sleep(poll)
    except KeyboardInterrupt:
        pr.close()
        print(_detach_hint(job_id), flush=True)
        return 0
    finally:
        pr.close()


def _make_engine(ws: Path, store: Any, cpu_slots: int = 2, validate_symbols: bool = True) -> Engine:
    from engine.controller import Engine

    return Engine(ws, store=store, cpu_slots=cpu_slots, validate_symbols=validate_symbols)


async def _own(ws: Path, store: Any, action: Any, follow: bool, cpu_slots: int = 2,
               validate_symbols: bool = True) -> int:
    """Run an engine here: start (recovery), do `action(engine) -> job id`, follow, stop (jobs go on)."""
    eng = _make_engine(ws, store, cpu_slots, validate_symbols)
    await eng.start()
    try:
        job_id = action(eng)
        if not follow:
            await asyncio.sleep(0)  # let the queued record reach the store in stop()
            return 0
        return await _follow_engine(eng, job_id)
    finally:
        await eng.stop()


def _submit_or_spool(ws: Path, spec: JobSpec, detach: bool, cpu_slots: int = 2) -> int:
    from engine.controller import spool_submit

    store = _open_writer(ws)
    if store is None:
        spool_submit(ws, spec)
        print(f"queued {spec.id} via the running console's spool (jobs/inbox/)", flush=True)
        return 0 if detach else _follow_readonly(ws, spec.id)
    try:
        def action(eng: Engine) -> str:
            eng.submit(spec)
            print(f"queued {spec.id}", flush=True)
            return spec.id

        if detach:
            # An engine that exits at once could not run the job: launch it, then detach.
            return asyncio.run(_own_then_detach(ws, store, action, cpu_slots))
        return asyncio.run(_own(ws, store, action, follow=True, cpu_slots=cpu_slots))
    finally:
        store.close()


async def _own_then_detach(ws: Path, store: Any, action: Any, cpu_slots: int) -> int:
    eng = _make_engine(ws, store, cpu_slots)
    await eng.start()
    try:
        job_id = action(eng)
        deadline = time.monotonic() + 5
        while (st := eng.job(job_id)) is not None and st.state == "queued" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        st = eng.job(job_id)
        where = f" on {st.device} (pid {st.pid})" if st and st.state == "running" else " (queued)"
        print(f"{job_id}{where}; follow with: forecast-console attach {job_id}", flush=True)
        return 0
    finally:
        await eng.stop()


# ---- commands ----------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from engine import paths
    from engine.jobs import JobSpec, Resources

    ws = _workspace()
    known = None
    try:
        from engine.data import list_symbols

        known = [i.symbol for i in list_symbols(paths.data_dirs(ws))]
    except ImportError:
        pass
    gpus = args.gpus if args.gpus is not None else (1.0 if args.vram > 0 else 0.0)
    spec = JobSpec.create(args.kind, args.stocks, model=args.model, params=dict(args.param),
                          priority=args.priority, resources=Resources(gpus=gpus, vram_gb=args.vram),
                          known_symbols=known)
    if known is not None:
        from engine.data import load_symbol

        dirs = paths.data_dirs(ws)
        for sym in spec.symbols:
            # A bad CSV is the user's input error: say FILE:LINE: reason now, queue nothing, rather
            # than start a job that can only fail.
            load_symbol(sym, dirs)
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
