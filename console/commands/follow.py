"""Submit jobs and follow them: the one path every headless job command goes through.

Why one module: `run`, `train`, `attach`, `retry` and the evaluation commands used to carry their
own submit/wait loops, and each copy got something wrong (a detached train job never started, a
train next to a running console failed instead of spooling, Ctrl-C said "interrupted" while the job
went on). Here, once:

  * Who writes the store: only one process may (the store's workspace lock). We first try to open
    the store for writing; if that works we run our own Engine (which also recovers and continues
    the workspace's queued and running jobs) and follow the job through the engine's updates. If a
    running console holds the lock, we do not touch the store: the spec goes through the spool
    (`jobs/<id>/spec.json`, then the marker `jobs/inbox/<id>`), the console's engine picks it up
    within a tick, and we follow by tailing the job's `events.jsonl` read-only.
  * `--detach` with our own engine: the engine launches the job before we return (an engine that
    stopped at once would leave it queued until some other command started one).
  * Ctrl-C while following detaches: the job keeps running in its own session, and we say so with
    the command that follows it again (`forecast-console attach ID`).
  * The job's last warnings and its error are printed before the verdict; exit status 0 when the
    job succeeded (or on detach), 1 otherwise, 2 when the spool refused the spec.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from engine.controller import Engine
    from engine.jobs import JobSpec

FINAL = ("succeeded", "failed", "cancelled", "interrupted")
DETACHED = "detached"
REJECTED = "rejected"


def open_writer(ws: Path) -> Any | None:
    """The store opened for writing, or None when a running console holds the lock."""
    from store import Store, StoreLocked

    try:
        return Store.open(ws)
    except StoreLocked:
        return None


class Printer:
    """Rich progress bar on a terminal, plain throttled lines otherwise (logs, CI).

    `stream` is stdout for the job commands; the evaluation commands pass stderr so that their
    `--json` output on stdout stays parseable.
    """

    def __init__(self, job_id: str, stream: TextIO | None = None) -> None:
        self.job_id = job_id
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self._last_line = 0.0
        self._progress: Any = None
        self._task: Any = None
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                      console=Console(file=self.stream))
            self._progress.start()
            self._task = self._progress.add_task(job_id[-26:], total=None, info="")

    def say(self, msg: str) -> None:
        if self._progress is not None:
            self._progress.console.print(msg)
        else:
            print(msg, file=self.stream, flush=True)

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
            print(f"[{self.job_id}] progress {done:g}/{total:g}{pct} {extra}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def detach_hint(job_id: str) -> str:
    return f"detached; job {job_id} keeps running. Re-attach with: forecast-console attach {job_id}"


def exit_code(state: str) -> int:
    """0 for success or a detach (the job goes on), 2 for a spec the engine refused, else 1."""
    return {"succeeded": 0, DETACHED: 0, REJECTED: 2}.get(state, 1)


def _verdict(state: str, reason: str | None, job_id: str, pr: Printer) -> tuple[str, str | None]:
    pr.close()
    print(f"job {job_id} {state}" + (f": {reason}" if reason else ""), file=pr.stream, flush=True)
    return state, reason


# ---- following ---------------------------------------------------------------------------------
async def follow_engine_state(eng: Engine, job_id: str, stream: TextIO | None = None,
                              show_result: bool = True) -> tuple[str, str | None]:
    """Follow through our engine's updates: (final state, reason), or ("detached", None) on Ctrl-C."""
    st = eng.job(job_id)
    if st is None:
        from console.cli import CliError

        raise CliError(f"no such job: {job_id}")
    q = eng.subscribe()
    detach = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, detach.set)
    pr = Printer(job_id, stream)
    what = " ".join(x for x in (st.kind, " ".join(st.symbols), st.model or "") if x)
    pr.say(f"job {job_id}: {what} — {st.state}")
    try:
        while True:
            if detach.is_set():
                pr.close()
                print(detach_hint(job_id), file=pr.stream, flush=True)
                return DETACHED, None
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
        if st.result_summary and show_result:
            pr.say("result: " + json.dumps(st.result_summary, default=str)[:2000])
        return _verdict(st.state, st.reason, job_id, pr)
    finally:
        pr.close()
        loop.remove_signal_handler(signal.SIGINT)
        eng.unsubscribe(q)


async def follow_engine(eng: Engine, job_id: str) -> int:
    """Follow through the engine's updates until the job ends or Ctrl-C (detach); the exit status."""
    state, _ = await follow_engine_state(eng, job_id)
    return exit_code(state)


def stored_record(ws: Path, job_id: str) -> dict[str, Any]:
    """The job's record as the store has it (read-only; {} when there is none or it cannot be read)."""
    from store import Store, StoreError

    if not (ws / "store.json").exists():
        return {}
    try:
        with Store.open(ws, readonly=True) as ro:
            return ro.get_job(job_id) or {}
    except StoreError:
        return {}


def follow_readonly_state(ws: Path, job_id: str, poll: float = 0.2,
                          stream: TextIO | None = None) -> tuple[str, str | None]:
    """Follow a job owned by another process's engine by tailing its event file (no writes).

    (final state, reason); ("detached", None) on Ctrl-C; ("rejected", why) when the owning engine
    refused the spooled spec.
    """
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
    pr = Printer(job_id, stream)
    pr.say(f"following {job_id} read-only (a running console owns the workspace)")
    offset = 0
    has_result = False
    try:
        while True:
            rejected = job_dir / "rejected.txt"
            if rejected.exists():
                pr.close()
                why = rejected.read_text(encoding="utf-8").strip()
                print(why, file=sys.stderr)
                return REJECTED, why
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
                rec = stored_record(ws, job_id)
                if rec.get("state") in FINAL:
                    # The owning engine already decided (e.g. "interrupted" after a crash): same verdict.
                    return _verdict(rec["state"], rec.get("reason"), job_id, pr)
                data = read_json(job_dir / EXIT_FILE)
                code = data.get("code") if data else None
                if code == 0 and has_result:
                    return _verdict("succeeded", None, job_id, pr)
                if code == 143:
                    return _verdict("cancelled", st.reason, job_id, pr)
                why = st.reason or ("process died (no exit status)" if code is None else f"exit code {code}")
                return _verdict("failed", why, job_id, pr)
            time.sleep(poll)
    except KeyboardInterrupt:
        pr.close()
        print(detach_hint(job_id), file=pr.stream, flush=True)
        return DETACHED, None
    finally:
        pr.close()


def follow_readonly(ws: Path, job_id: str, poll: float = 0.2) -> int:
    """`follow_readonly_state` as an exit status."""
    state, _ = follow_readonly_state(ws, job_id, poll)
    return exit_code(state)


# ---- owning an engine --------------------------------------------------------------------------
def make_engine(ws: Path, store: Any, cpu_slots: int = 2, validate_symbols: bool = True) -> Engine:
    from engine.controller import Engine

    return Engine(ws, store=store, cpu_slots=cpu_slots, validate_symbols=validate_symbols)


async def own(ws: Path, store: Any, action: Callable[[Engine], str], follow: bool, cpu_slots: int = 2,
              validate_symbols: bool = True) -> int:
    """Run an engine here: start (recovery), do `action(engine) -> job id`, follow, stop (jobs go on)."""
    eng = make_engine(ws, store, cpu_slots, validate_symbols)
    await eng.start()
    try:
        job_id = action(eng)
        if not follow:
            await asyncio.sleep(0)  # let the queued record reach the store in stop()
            return 0
        return await follow_engine(eng, job_id)
    finally:
        await eng.stop()


async def own_then_detach(ws: Path, store: Any, action: Callable[[Engine], str], cpu_slots: int) -> int:
    """Run an engine until the job has been launched (at most 5 s), then return; the job goes on."""
    eng = make_engine(ws, store, cpu_slots)
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


def submit_and_follow(ws: Path, spec: JobSpec, detach: bool, cpu_slots: int = 2) -> int:
    """Queue `spec` (our own engine, or the running console's spool) and follow it; the exit status."""
    from engine.controller import spool_submit

    store = open_writer(ws)
    if store is None:
        spool_submit(ws, spec)
        print(f"queued {spec.id} via the running console's spool (jobs/inbox/)", flush=True)
        return 0 if detach else follow_readonly(ws, spec.id)
    try:
        def action(eng: Engine) -> str:
            eng.submit(spec)
            print(f"queued {spec.id}", flush=True)
            return spec.id

        if detach:
            # An engine that exits at once could not run the job: launch it, then detach.
            return asyncio.run(own_then_detach(ws, store, action, cpu_slots))
        return asyncio.run(own(ws, store, action, follow=True, cpu_slots=cpu_slots))
    finally:
        store.close()


# ---- several jobs, results wanted (the evaluation commands) ------------------------------------
@dataclass
class Outcome:
    spec: Any
    state: str
    reason: str | None
    result: dict[str, Any] | None


def job_result(ws: Path, job_id: str) -> dict[str, Any] | None:
    """The payload of the job's `result` event (what the task returned), or None."""
    from engine.events import read_events

    events = read_events(ws / "jobs" / job_id / "events.jsonl", 0).events
    for e in reversed(events):
        if e.get("type") == "result":
            return {k: v for k, v in e.items() if k not in ("job", "t", "type")}
    return None


def run_jobs(ws: Path, specs: Sequence[JobSpec], *, cpu_slots: int = 1,
             stream: TextIO | None = None) -> list[Outcome] | None:
    """Queue every spec, follow each to its end, and return their outcomes (results included).

    Same ownership rules as `submit_and_follow`; progress goes to `stream` (stderr by default, so a
    command's stdout carries only its answer). None when the user detached with Ctrl-C (the jobs go
    on; the hint to re-attach each one was printed).
    """
    from engine.controller import spool_submit

    out_stream = stream if stream is not None else sys.stderr
    store = open_writer(ws)
    outcomes: list[Outcome] = []

    def detached(rest: Sequence[JobSpec]) -> None:
        for s in rest:
            print(detach_hint(s.id), file=out_stream, flush=True)

    if store is None:
        print(f"note: a running console owns {ws}; handing the jobs to its engine (jobs/inbox/)", file=out_stream)
        for s in specs:
            spool_submit(ws, s)
        for i, s in enumerate(specs):
            state, reason = follow_readonly_state(ws, s.id, stream=out_stream)
            if state == DETACHED:
                detached(specs[i + 1:])
                return None
            outcomes.append(Outcome(s, state, reason, job_result(ws, s.id)))
        return outcomes

    async def go() -> list[Outcome] | None:
        eng = make_engine(ws, store, cpu_slots)
        await eng.start()
        try:
            for s in specs:
                eng.submit(s)
            for i, s in enumerate(specs):
                state, reason = await follow_engine_state(eng, s.id, out_stream, show_result=False)
                if state == DETACHED:
                    detached(specs[i + 1:])
                    return None
                outcomes.append(Outcome(s, state, reason, None))
            return outcomes
        finally:
            await eng.stop()  # the last tick's store writes (results, records) land before this returns

    try:
        res = asyncio.run(go())
    finally:
        store.close()
    if res is not None:
        for o in res:
            o.result = job_result(ws, o.spec.id)
    return res


def open_runner(ws: Path) -> Any:
    """A pipeline/sweep Runner under the same ownership rule: our own engine when the workspace is
    free, the running console's inbox when it is not."""
    from engine.runners import EngineRunner, SpoolRunner
    from store.storage import StoreLocked

    try:
        return EngineRunner(ws)
    except StoreLocked as exc:
        print(f"note: {exc}; handing the jobs to the running console's engine", file=sys.stderr)
        return SpoolRunner(ws)
