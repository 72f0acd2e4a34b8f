"""The engine's in-memory jobs and how they change: queued, events folded in, finished.

Everything here runs on the engine's event loop (or, during recovery, in one thread before the
loop starts, with updates held back). It owns three things the other engine modules share:
- `jobs`: one `LiveJob` per known job (spec, state, handle, curve, log tail, result bookkeeping);
- the subscribers, who get every `JobUpdate`;
- the dirty set: which job records the persistence step must write at the end of the tick.
Side effects on the store are never done here: a `result` payload is handed to `on_result`
(engine.persistence queues it as an ordered store write).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.backends.base import ExitStatus, Handle
from engine.deaths import EXIT_DISK_FULL, dead_state, death_reason, oom_kills
from engine.events import EventWriter, TailChunk, read_events
from engine.jobs import JobDir, JobSpec, JobSpecError
from engine.scheduler import Scheduler
from engine.state import JobState, JobUpdate, Status, apply_event

#: Event types that are streaming data: the job record is persisted at most every
#: `persist_interval` for these; anything else (started, result, error, metric) persists at once.
STREAMING = frozenset({"progress", "loss", "log", "artifact", "heartbeat"})


def log_line(level: str, msg: str, t: float | None = None) -> str:
    """The one format of a job's log-tail line: `HH:MM:SS level   message` (local time)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(t or time.time()))
    return f"{stamp} {level:<7} {msg}"


def event_log_line(ev: dict[str, Any], update: JobUpdate) -> str:
    """The log-tail line of a `log`/`error`/`artifact` event (from the update apply_event made)."""
    return log_line(update.data.get("level", "info"), update.data.get("msg", ""), ev.get("t"))


@dataclass
class LiveJob:
    """Engine-side bookkeeping for one job (never leaves the engine)."""

    spec: JobSpec
    state: JobState
    handle: Handle | None = None
    offset: int = 0
    persisted_offset: int = 0  # side effects below this offset were done by an earlier engine
    curve: list[dict[str, Any]] = field(default_factory=list)
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=2000))
    cancel_requested: bool = False
    launching: bool = False
    has_result: bool = False
    run_ids: list[str] = field(default_factory=list)
    result_extra: dict[str, Any] = field(default_factory=dict)
    last_persist: float = 0.0
    loaded: bool = True  # False for jobs loaded from the store (curve and logs read when asked)
    history_end: int | None = None  # ... from the events before this offset (None: the whole file)
    exit_fd: int | None = None  # readable when the process ends (wakes the poller)
    checkpointed: bool = False  # the worker reported a checkpoint (artifact kind "checkpoint"): resumable
    oom_base: int | None = None  # the cgroup's OOM-kill count when the job was launched

    @property
    def job_dir(self) -> Path:
        return self.handle.job_dir if self.handle else Path()


class JobTable:
    """Jobs by id, their subscribers, and the records to persist."""

    def __init__(self, jobs_dir: Path, scheduler: Scheduler) -> None:
        self.jobs_dir = jobs_dir
        self.scheduler = scheduler
        self.jobs: dict[str, LiveJob] = {}
        self.subs: list[asyncio.Queue[JobUpdate]] = []
        self.dirty: dict[str, bool] = {}  # job id -> urgent
        self.held: list[JobUpdate] | None = None  # recovery runs in a thread: updates wait for the loop
        self.on_result: Callable[[LiveJob, dict[str, Any]], None] = lambda j, payload: None
        self.on_finish: list[Callable[[LiveJob], None]] = []
        self.wake: Callable[[], None] = lambda: None
        #: Finds a job the table does not hold (an old finished one, left in the store at start).
        self.load: Callable[[str], LiveJob | None] = lambda job_id: None

    def dir(self, job_id: str) -> JobDir:
        return JobDir(self.jobs_dir / job_id)

    def get(self, job_id: str) -> LiveJob | None:
        j = self.jobs.get(job_id)
        return j if j is not None else self.load(job_id)

    def require(self, job_id: str) -> LiveJob:
        j = self.get(job_id)
        if j is None:
            raise JobSpecError(f"no such job: {job_id}")
        return j

    def running(self) -> list[LiveJob]:
        return [j for j in self.jobs.values() if j.state.state == Status.RUNNING]

    # ---- publishing --------------------------------------------------------------------------
    def publish(self, upd: JobUpdate) -> None:
        if self.held is not None:
            self.held.append(upd)
            return
        for q in self.subs:
            q.put_nowait(upd)

    def release_held(self) -> None:
        held, self.held = self.held or [], None
        for upd in held:
            self.publish(upd)

    def mark(self, job_id: str, urgent: bool) -> None:
        self.dirty[job_id] = urgent or self.dirty.get(job_id, False)

    def log(self, j: LiveJob, level: str, msg: str, t: float | None = None) -> None:
        line = log_line(level, msg, t)
        j.logs.append(line)
        self.publish(JobUpdate(j.state.id, "log", {"level": level, "msg": msg, "line": line}))

    # ---- lifecycle ---------------------------------------------------------------------------
    def enqueue(self, spec: JobSpec, state: JobState | None = None) -> JobState:
        st = state or JobState.from_spec(spec)
        st.state = Status.QUEUED
        self.scheduler.push(spec)
        job = LiveJob(spec=spec, state=st, handle=Handle(spec.id, self.jobs_dir / spec.id))
        self.jobs[spec.id] = job
        self.log(job, "info", f"queued (priority {spec.priority})")
        self.publish(JobUpdate(spec.id, "state", {"state": Status.QUEUED}))
        self.mark(spec.id, urgent=True)
        self.wake()
        return st

    def requeue(self, j: LiveJob, reason: str) -> None:
        """Back to the queue, in its place by priority and arrival, a job recorded as running whose worker
        never started (engine.recovery.requeue_unstarted). `reason` stays in its record until it starts,
        and is a `log` event in its event file, so its log says so after it ran (no worker of that
        launch can write there any more, and the next one is not started yet: the file is the engine's
        for this one line)."""
        st = j.state
        st.state, st.reason, st.warning = Status.QUEUED, reason, None
        st.device = st.pid = st.started_at = None
        self.scheduler.requeue(j.spec)
        jd = self.dir(st.id)
        j.handle = Handle(st.id, jd.path)
        try:
            writer = EventWriter(jd.events, st.id)
            try:
                writer.emit("log", level="warning", msg=reason)
            finally:
                writer.close()
            self.ingest(j, read_events(jd.events, j.offset))
        except OSError:  # a full disk: the record's reason and the log tail still say it
            self.log(j, "warning", reason)
        self.publish(JobUpdate(st.id, "state", {"state": Status.QUEUED, "reason": reason}))
        self.mark(st.id, urgent=True)
        self.wake()

    def ingest(self, j: LiveJob, chunk: TailChunk, side_effects: bool = True) -> None:
        """Fold a chunk of events into a job; `side_effects=False` while replaying old events."""
        start = j.offset
        j.offset = chunk.offset
        replaying = not side_effects or chunk.offset <= j.persisted_offset
        st = j.state
        subs = bool(self.subs)
        urgent = False
        for ev in chunk.events:
            typ = ev.get("type")
            ups = apply_event(st, ev)
            if typ not in STREAMING:
                urgent = True
            if typ == "loss":
                j.curve.append(ups[0].data)
            elif typ == "heartbeat":
                if ups:  # it cleared a stale-heartbeat warning
                    urgent = True
            elif typ == "result":
                j.has_result = True
                if not replaying:
                    self.on_result(j, ups[0].data)
            elif typ in ("log", "error", "artifact"):
                line = event_log_line(ev, ups[0])
                ups[0].data["line"] = line  # clients (other processes) show the same line
                j.logs.append(line)
                if typ == "artifact" and ev.get("kind") == "checkpoint":
                    j.checkpointed = True
            if subs:
                for u in ups:
                    self.publish(u)
        if chunk.events or chunk.offset != start:
            self.mark(st.id, urgent=urgent)

    def finish(self, j: LiveJob, state: Status, reason: str | None, status: ExitStatus | None = None) -> None:
        st = j.state
        st.state = state
        st.reason = reason
        st.finished_at = time.time()
        st.warning = None
        if status is not None:
            st.exit_code = status.code if status.signal is None else -status.signal
        if state == Status.SUCCEEDED:
            st.progress_done = max(st.progress_done, st.progress_total)
        self.scheduler.release(st.id)
        self.scheduler.remove(st.id)
        for hook in self.on_finish:
            hook(j)
        self.log(j, "info" if state == Status.SUCCEEDED else "error", f"{state}" + (f": {reason}" if reason else ""))
        self.publish(JobUpdate(st.id, "state", {"state": state, "reason": reason, "exit_code": st.exit_code}))
        self.mark(st.id, urgent=True)
        self.wake()

    def on_exit(self, j: LiveJob, status: ExitStatus) -> None:
        """The job's process ended: succeeded (exit 0 and a result), cancelled, or failed (and why)."""
        st = j.state
        error_reason = st.reason  # set by an `error` event, if the worker sent one
        if j.cancel_requested:
            self.finish(j, Status.CANCELLED, "cancelled by user", status)
            return
        if status.ok and j.has_result:
            self.finish(j, Status.SUCCEEDED, None, status)
            return
        state = Status.FAILED
        if status.ok:
            reason = "worker exited 0 without a result"
        elif status.signal is not None or status.code is None or status.code == EXIT_DISK_FULL:
            # Died rather than reported an error: the one rule (engine.deaths), watched or not.
            oom_now = oom_kills() if status.signal == signal.SIGKILL else None
            reason = death_reason(status.reason, status.code, status.signal, error=error_reason,
                                  oom_before=j.oom_base, oom_now=oom_now)
            state = dead_state(j.spec.kind, j.checkpointed)
        else:
            reason = f"{error_reason} ({status.reason})" if error_reason else status.reason
        tail = self.dir(st.id).stderr_tail()
        st.stderr_tail = tail or None
        for line in tail.splitlines()[-5:]:
            j.logs.append(f"stderr  {line}")
        self.finish(j, state, reason, status)
