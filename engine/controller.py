"""The Engine: queue, launch, watch and record jobs; the only writer of job data to the store.

One asyncio task (the poller) does everything periodic, each tick:
  1. I/O in a thread: pick up spooled submissions (`jobs/inbox/`), poll each running job's
     process, read new complete lines from its `events.jsonl`, take a GPU snapshot when needed;
  2. on the loop: fold events into `JobState` (engine.state.apply_event), keep curves and log
     tails in memory, publish `JobUpdate`s, finish jobs whose process ended, flag stale heartbeats;
  3. admission (engine.scheduler) and launching (the backend, in a thread);
  4. store writes in a thread, coalesced: one `put_job` per changed job per tick (progress-only
     changes at most every `persist_interval`), plus the `result` payloads (runs, baselines,
     picks, comparisons, regressions) in arrival order.
No timer per job, no blocking call on the event loop.

Spool: a CLI that finds the store locked by a running console cannot write it, so it writes
`jobs/<id>/spec.json` and then an empty marker `jobs/inbox/<id>` (or `jobs/inbox/<id>.cancel`);
the running engine picks these up on its next tick, validates the spec like `submit`, and
removes the marker. Marker after spec, so a half-written spec is never seen.

Recovery (`start()`): jobs the store has as `running` are re-attached when their process is still
alive (pid and start time match), and their events are replayed from byte 0 to rebuild state and
curve; side effects (store result writes) only happen past the offset the previous engine had
recorded. A dead one becomes `succeeded`/`failed` if it left `exit.json`, otherwise
`interrupted` (retry resumes it with params {"resume": true}). Queued jobs are re-queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.backends.base import Backend, ExitStatus, Handle
from engine.events import TailChunk, read_events
from engine.gpu import GpuSource, Telemetry
from engine.jobs import JobSpec, JobSpecError
from engine.scheduler import COORDINATOR_KINDS, Placement, Scheduler
from engine.state import FINAL_STATES, JobState, JobUpdate, apply_event

if TYPE_CHECKING:
    from store import Store

log = logging.getLogger("engine")

INBOX = "inbox"
EVENTS_FILE = "events.jsonl"


# ---- spool (used by a CLI that cannot open the store for writing) ---------------------------
def spool_submit(workspace: Path, spec: JobSpec) -> Path:
    """Hand a spec to the engine of a running console: spec.json first, then the inbox marker."""
    job_dir = Path(workspace) / "jobs" / spec.id
    job_dir.mkdir(parents=True, exist_ok=True)
    spec.write(job_dir)
    inbox = Path(workspace) / "jobs" / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    marker = inbox / spec.id
    marker.touch()
    return marker


def spool_cancel(workspace: Path, job_id: str) -> Path:
    inbox = Path(workspace) / "jobs" / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    marker = inbox / f"{job_id}.cancel"
    marker.touch()
    return marker


def stderr_tail(job_dir: Path, n_lines: int = 12, max_bytes: int = 4000) -> str:
    try:
        with open(Path(job_dir) / "stderr.log", "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.strip().splitlines()[-n_lines:])


@dataclass
class _Job:
    """Engine-side bookkeeping for one job (never leaves this module)."""

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
    loaded: bool = True  # False for finished jobs loaded from the store (curve built lazily)
    exit_fd: int | None = None  # readable when the process ends (wakes the poller)

    @property
    def job_dir(self) -> Path:
        return self.handle.job_dir if self.handle else Path()


class Engine:
    def __init__(self, workspace: Path, *, store: Store | Any, backend: Backend | None = None,
                 cpu_slots: int = 2, gpu_source: GpuSource | None = None, poll_interval: float = 0.2,
                 vram_reserve_gb: float = 2.0, stale_after_s: float = 30.0, cancel_grace_s: float = 5.0,
                 heartbeat_s: float = 5.0, persist_interval: float = 1.0, validate_symbols: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.jobs_dir = self.workspace / "jobs"
        self.store = store
        if backend is None:
            # `--backend/--address` reach every Engine (CLI, console, sweep coordinator) via env.
            from engine.backends import backend_from_env

            backend = backend_from_env(Path(workspace))
        self.backend: Backend = backend
        self.gpu_source = gpu_source
        self.poll_interval = poll_interval
        self.stale_after_s = stale_after_s
        self.cancel_grace_s = cancel_grace_s
        self.heartbeat_s = heartbeat_s
        self.persist_interval = persist_interval
        self.validate_symbols = validate_symbols
        self.extra_env = dict(env or {})
        # A backend that admits by itself (Ray: num_cpus/num_gpus) gets every queued job up to its
        # `max_in_flight`; the local GPUs' telemetry must not gate jobs that run elsewhere.
        self.backend_schedules = bool(getattr(backend, "schedules_resources", False))
        if self.backend_schedules:
            cpu_slots = max(cpu_slots, int(getattr(backend, "max_in_flight", 64)))
        self.scheduler = Scheduler(cpu_slots=cpu_slots, vram_reserve_gb=vram_reserve_gb)
        self._jobs: dict[str, _Job] = {}
        self._subs: list[asyncio.Queue[JobUpdate]] = []
        self._dirty: dict[str, bool] = {}  # job id -> urgent
        self._ops: list[Callable[[], None]] = []  # ordered store writes (result payloads)
        self._telemetry: Telemetry | None = None
        self._telemetry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._known: tuple[float, set[str]] | None = None
        self.store_errors: list[str] = []
        self._held: list[JobUpdate] | None = None
        self._stopping = False
        self.ticks = 0

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Recover jobs from the store, then start the poller."""
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        (self.jobs_dir / INBOX).mkdir(exist_ok=True)
        if self.gpu_source is None:
            from engine.gpu import detect_source

            self.gpu_source = await asyncio.to_thread(detect_source)
        self._telemetry = await asyncio.to_thread(self.gpu_source.snapshot)
        if self.validate_symbols:  # the data layer imports pandas: do that off the loop, once
            await asyncio.to_thread(self.known_symbols)
        self._telemetry_at = time.time()
        records = await asyncio.to_thread(self._store_call, "jobs")
        self._held = []
        try:
            await asyncio.to_thread(self._recover, records or [])
        finally:
            held, self._held = self._held, None
        for upd in held:
            self._publish(upd)
        await self._flush()
        for j in self._jobs.values():
            if j.state.state == "running":
                self._watch_exit(j)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="engine-poller")

    async def stop(self, cancel_running: bool = False) -> None:
        """Stop watching. Jobs keep running (detached) unless `cancel_running`."""
        if cancel_running:
            for jid in [j.state.id for j in self._jobs.values() if j.state.state == "running"]:
                self.cancel(jid)
            deadline = time.time() + self.cancel_grace_s + 2.0
            while self.running_count() and time.time() < deadline and self._task is not None:
                await asyncio.sleep(self.poll_interval)
        if self._task is not None:
            # Let the current tick finish (its store writes included) rather than cancel it mid-write.
            self._stopping = True
            self._poke()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for j in self._jobs.values():
            self._unwatch_exit(j)
        await self._flush(force=True)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the poller must survive one bad tick
                log.exception("engine tick failed")
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_delay())
            self._wake.clear()

    def _next_delay(self) -> float:
        """The poll interval, but short while a job is about to end (result sent, or cancelling),
        so its slot is freed promptly without polling every job fast all the time."""
        for j in self._jobs.values():
            if j.state.state == "running" and (j.has_result or j.cancel_requested or j.state.reason):
                return min(self.poll_interval, 0.01)
        return self.poll_interval

    def _watch_exit(self, j: _Job) -> None:
        """Wake the poller the moment this job's process ends (pidfd), where the backend can."""
        fn = getattr(self.backend, "exit_fd", None)
        if j.handle is None or not callable(fn) or j.exit_fd is not None:
            return
        fd = fn(j.handle)
        if fd is None:
            return
        try:
            asyncio.get_running_loop().add_reader(fd, self._poke)
            j.exit_fd = fd
        except (RuntimeError, OSError, ValueError):
            os.close(fd)

    def _unwatch_exit(self, j: _Job) -> None:
        if j.exit_fd is None:
            return
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            asyncio.get_running_loop().remove_reader(j.exit_fd)
        with contextlib.suppress(OSError):
            os.close(j.exit_fd)
        j.exit_fd = None

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ---- public API ----------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[JobUpdate]:
        q: asyncio.Queue[JobUpdate] = asyncio.Queue()
        self._subs.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[JobUpdate]) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(q)

    def jobs(self) -> list[JobState]:
        return sorted((j.state for j in self._jobs.values()), key=lambda s: (s.created_at, s.id))

    def job(self, job_id: str) -> JobState | None:
        j = self._jobs.get(job_id)
        return j.state if j else None

    def spec(self, job_id: str) -> JobSpec | None:
        j = self._jobs.get(job_id)
        return j.spec if j else None

    def queued(self) -> list[JobState]:
        """Queued jobs in the order they will start."""
        return [self._jobs[s.id].state for s in self.scheduler.queued() if s.id in self._jobs]

    def running_count(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state.state == "running")

    def telemetry(self) -> Telemetry | None:
        """The latest GPU/CPU snapshot the scheduler used."""
        return self._telemetry

    def job_for_pid(self, pid: int) -> str | None:
        """Which running job a (GPU) process belongs to, by pid or process group."""
        for j in self._jobs.values():
            if j.handle is not None and j.state.state == "running" and self.backend.owns_pid(j.handle, pid):
                return j.state.id
        return None

    def curve(self, job_id: str) -> list[dict[str, Any]]:
        j = self._jobs.get(job_id)
        if j is None:
            return []
        self._ensure_loaded(j)
        return list(j.curve)

    def log_tail(self, job_id: str, n: int = 200) -> list[str]:
        j = self._jobs.get(job_id)
        if j is None:
            return []
        self._ensure_loaded(j)
        return list(j.logs)[-n:]

    def known_symbols(self) -> set[str] | None:
        """Symbols with a CSV in the data folders (cached 2 s); None when the data layer is absent."""
        if self._known is not None and time.time() - self._known[0] < 2.0:
            return self._known[1]
        try:
            from engine.data import list_symbols
        except ImportError:
            return None
        from engine import paths

        syms = {i.symbol for i in list_symbols(paths.data_dirs(self.workspace))}
        self._known = (time.time(), syms)
        return syms

    def submit(self, spec: JobSpec) -> JobState:
        """Validate and queue a job; raises JobSpecError (and queues nothing) when it is invalid."""
        self._validate(spec)
        job_dir = self.jobs_dir / spec.id
        job_dir.mkdir(parents=True, exist_ok=True)
        spec.write(job_dir)
        return self._enqueue(spec)

    def _validate(self, spec: JobSpec) -> None:
        if not isinstance(spec, JobSpec):
            raise JobSpecError(f"expected a JobSpec, got {type(spec).__name__}")
        if spec.id in self._jobs:
            raise JobSpecError(f"job {spec.id} already exists")
        # Specs also arrive hand-written through the spool, never having passed JobSpec.create.
        from engine import task_params

        task_params.check(spec.kind, spec.params)
        if self.validate_symbols:
            known = self.known_symbols()
            if known is not None:
                unknown = [s for s in spec.symbols if s not in known]
                if unknown:
                    raise JobSpecError(f"unknown symbol(s): {', '.join(unknown)} (no CSV in the data folders)")
        self.scheduler.check_fits(spec, None if self.backend_schedules else self._telemetry)

    def _enqueue(self, spec: JobSpec, state: JobState | None = None) -> JobState:
        st = state or JobState.from_spec(spec)
        st.state = "queued"
        self.scheduler.push(spec)
        job = _Job(spec=spec, state=st, handle=Handle(spec.id, self.jobs_dir / spec.id))
        self._jobs[spec.id] = job
        self._log(job, "info", f"queued (priority {spec.priority})")
        self._publish(JobUpdate(spec.id, "state", {"state": "queued"}))
        self._mark(spec.id, urgent=True)
        self._poke()
        return st

    def cancel(self, job_id: str) -> None:
        """Queued: leaves the queue. Running: SIGTERM to its process group, SIGKILL after the grace."""
        j = self._require(job_id)
        if j.state.finished:
            raise JobSpecError(f"job {job_id} is already {j.state.state}")
        if j.state.state == "queued":
            self.scheduler.remove(job_id)
            self._finish(j, "cancelled", "cancelled while queued")
            return
        if not j.cancel_requested:
            j.cancel_requested = True
            self._log(j, "warning", "cancel requested")
            if j.handle is not None and not j.launching:
                self.backend.cancel(j.handle, self.cancel_grace_s)
            self._poke()

    def retry(self, job_id: str) -> JobState:
        """A new attempt of a finished job (same spec); an interrupted one resumes."""
        j = self._require(job_id)
        if not j.state.finished:
            raise JobSpecError(f"job {job_id} is {j.state.state}; only finished jobs can be retried")
        spec = j.spec.retry()
        if j.state.state == "interrupted":
            spec = replace(spec, params={**spec.params, "resume": True})
        return self.submit(spec)

    def set_priority(self, job_id: str, priority: int) -> None:
        j = self._require(job_id)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise JobSpecError(f"priority must be an integer, got {priority!r}")
        if j.state.state != "queued":
            raise JobSpecError(f"job {job_id} is {j.state.state}; only queued jobs can be re-prioritised")
        j.spec = self.scheduler.set_priority(job_id, priority)
        j.state.priority = priority
        self._publish(JobUpdate(job_id, "state", {"state": "queued", "priority": priority}))
        self._mark(job_id, urgent=True)
        self._poke()

    def _require(self, job_id: str) -> _Job:
        j = self._jobs.get(job_id)
        if j is None:
            raise JobSpecError(f"no such job: {job_id}")
        return j

    # ---- internals: publishing, bookkeeping ---------------------------------------------
    def _publish(self, upd: JobUpdate) -> None:
        if self._held is not None:  # recovery runs in a thread: hold updates for the loop
            self._held.append(upd)
            return
        for q in self._subs:
            q.put_nowait(upd)

    def _mark(self, job_id: str, urgent: bool) -> None:
        self._dirty[job_id] = urgent or self._dirty.get(job_id, False)

    def _log(self, j: _Job, level: str, msg: str, t: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(t or time.time()))
        j.logs.append(f"{stamp} {level:<7} {msg}")
        self._publish(JobUpdate(j.state.id, "log", {"level": level, "msg": msg}))

    #: Event types that are streaming data: the job record is persisted at most every
    #: `persist_interval` for these; anything else (started, result, error, metric) persists at once.
    _STREAMING = frozenset({"progress", "loss", "log", "artifact", "heartbeat"})

    def _ingest(self, j: _Job, chunk: TailChunk, side_effects: bool = True) -> None:
        """Fold a chunk of events into a job; `side_effects=False` while replaying old events."""
        start = j.offset
        j.offset = chunk.offset
        replaying = not side_effects or chunk.offset <= j.persisted_offset
        st = j.state
        subs = bool(self._subs)
        urgent = False
        streaming = self._STREAMING
        for ev in chunk.events:
            typ = ev.get("type")
            ups = apply_event(st, ev)
            if typ not in streaming:
                urgent = True
            if typ == "loss":
                j.curve.append(ups[0].data)
            elif typ == "heartbeat":
                if ups:  # it cleared a stale-heartbeat warning
                    urgent = True
            elif typ == "result":
                j.has_result = True
                if not replaying:
                    self._queue_result(j, ups[0].data)
            elif typ in ("log", "error", "artifact"):
                u = ups[0].data
                stamp = time.strftime("%H:%M:%S", time.localtime(ev.get("t") or time.time()))
                j.logs.append(f"{stamp} {u.get('level', 'info'):<7} {u.get('msg', '')}")
            if subs:
                for u in ups:
                    self._publish(u)
        if chunk.events or chunk.offset != start:
            self._mark(st.id, urgent=urgent)

    def _queue_result(self, j: _Job, payload: dict[str, Any]) -> None:
        """Turn a `result` payload into ordered store writes (done in the flush thread)."""
        jid = j.state.id
        runs = payload.get("runs") or []
        baselines = payload.get("baselines") or []
        picks = payload.get("picks") or []
        comparisons = payload.get("comparisons") or []
        regressions = [{**r, "job_id": jid} for r in payload.get("regressions") or [] if isinstance(r, dict)]
        for key in ("regressions", "summary"):
            if key in payload:
                j.result_extra[key] = payload[key]

        def write() -> None:
            s = self.store
            for r in runs:
                rid = s.log_run(
                    r["model"], r["symbol"], r.get("hyperparams") or {}, r.get("metrics") or {},
                    checkpoint=r.get("checkpoint"), training_time=r.get("training_time"),
                    notes=r.get("notes", ""), seed=r.get("seed"), job_id=jid, extra=r.get("extra"),
                )
                j.run_ids.append(rid)
            if baselines:
                s.put_baselines(list(baselines))
            for p in picks:
                s.set_pick(p["model"], p["symbol"], dict(p))
            if comparisons:
                s.put_comparisons(list(comparisons))
            if regressions:
                s.put_regressions(regressions)

        self._ops.append(write)

    def _finish(self, j: _Job, state: str, reason: str | None, status: ExitStatus | None = None) -> None:
        st = j.state
        st.state = state
        st.reason = reason
        st.finished_at = time.time()
        st.warning = None
        if status is not None:
            st.exit_code = status.code if status.signal is None else -status.signal
        if state == "succeeded":
            st.progress_done = max(st.progress_done, st.progress_total)
        self.scheduler.release(st.id)
        self.scheduler.remove(st.id)
        self._unwatch_exit(j)
        forget = getattr(self.gpu_source, "forget_job", None)
        if callable(forget):
            forget(st.id)
        self._log(j, "info" if state == "succeeded" else "error", f"{state}" + (f": {reason}" if reason else ""))
        self._publish(JobUpdate(st.id, "state", {"state": state, "reason": reason, "exit_code": st.exit_code}))
        self._mark(st.id, urgent=True)
        self._poke()

    def _on_exit(self, j: _Job, status: ExitStatus) -> None:
        st = j.state
        error_reason = st.reason  # set by an `error` event, if the worker sent one
        if j.cancel_requested:
            self._finish(j, "cancelled", "cancelled by user", status)
            return
        if status.ok and j.has_result:
            self._finish(j, "succeeded", None, status)
            return
        if status.ok:
            reason = "worker exited 0 without a result"
        elif status.signal is not None or status.code is None:
            reason = status.reason
        else:
            reason = f"{error_reason} ({status.reason})" if error_reason else status.reason
        tail = stderr_tail(self.jobs_dir / st.id)
        st.stderr_tail = tail or None
        for line in tail.splitlines()[-5:]:
            j.logs.append(f"stderr  {line}")
        self._finish(j, "failed", reason, status)

    def _record(self, j: _Job) -> dict[str, Any]:
        rec = j.state.to_record()
        rec["spec"] = j.spec.to_dict()
        rec["events_offset"] = j.offset
        rec["job_dir"] = str(self.jobs_dir / j.state.id)
        rec["backend"] = getattr(self.backend, "name", "local")
        if j.run_ids:
            rec["run_ids"] = list(j.run_ids)
        if j.result_extra:
            rec["result"] = dict(j.result_extra)
        return rec

    # ---- store ----------------------------------------------------------------------------
    def _store_call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.store, name)(*args)
        except Exception as exc:  # noqa: BLE001 - a store problem must not stop the engine
            msg = f"store.{name} failed: {type(exc).__name__}: {exc}"
            log.error(msg)
            self.store_errors.append(msg)
            return None

    async def _flush(self, force: bool = False) -> None:
        now = time.time()
        ops, self._ops = self._ops, []
        recs: list[tuple[_Job, dict[str, Any]]] = []
        keep: dict[str, bool] = {}
        for jid, urgent in self._dirty.items():
            j = self._jobs.get(jid)
            if j is None:
                continue
            if urgent or force or now - j.last_persist >= self.persist_interval:
                j.last_persist = now
                recs.append((j, self._record(j)))
            else:
                keep[jid] = False
        self._dirty = keep
        if not ops and not recs:
            return
        await asyncio.to_thread(self._write, ops, recs)

    def _write(self, ops: list[Callable[[], None]], recs: list[tuple[_Job, dict[str, Any]]]) -> None:
        for op in ops:
            try:
                op()
            except Exception as exc:  # noqa: BLE001
                msg = f"store write of a job result failed: {type(exc).__name__}: {exc}"
                log.error(msg)
                self.store_errors.append(msg)
        for j, rec in recs:
            if j.run_ids:  # run ids appear only after the ops above ran
                rec["run_ids"] = list(j.run_ids)
            self._store_call("put_job", rec)

    # ---- recovery ---------------------------------------------------------------------------
    def _load_spec(self, rec: dict[str, Any]) -> JobSpec | None:
        try:
            if isinstance(rec.get("spec"), dict):
                return JobSpec.from_dict(rec["spec"])
            return JobSpec.from_json((self.jobs_dir / rec["id"] / "spec.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError) as exc:
            log.error("cannot recover job %s: %s", rec.get("id"), exc)
            return None

    def _recover(self, records: Iterable[dict[str, Any]]) -> None:
        """Runs in a thread before the poller starts (nothing else touches engine state yet)."""
        for rec in sorted(records, key=lambda r: (r.get("created_at") or 0, r.get("id", ""))):
            jid = rec.get("id")
            if not isinstance(jid, str) or jid in self._jobs:
                continue
            state = rec.get("state")
            spec = self._load_spec(rec)
            if spec is None:
                continue
            st = JobState.from_record(rec)
            job_dir = self.jobs_dir / jid
            if state == "queued":
                self.scheduler.push(spec)
                self._jobs[jid] = _Job(spec=spec, state=st, handle=Handle(jid, job_dir))
                continue
            if state != "running":
                self._jobs[jid] = _Job(spec=spec, state=st, handle=Handle(jid, job_dir), loaded=False)
                continue
            j = _Job(spec=spec, state=st, persisted_offset=int(rec.get("events_offset") or 0))
            j.run_ids = list(rec.get("run_ids") or [])
            self._jobs[jid] = j
            # Rebuild state from the whole file; only events past persisted_offset have effects.
            st.warning = None
            self._replay(j, job_dir / EVENTS_FILE)
            handle = self.backend.attach(jid, job_dir)
            if handle is not None:
                j.handle = handle
                st.pid = handle.pid or st.pid
                gpu = None
                if st.device and st.device.startswith("cuda:"):
                    gpu = int(st.device.split(":", 1)[1])
                self.scheduler.mark_running(jid, Placement(gpu=gpu, vram_gb=st.vram_gb, admitted_at=time.time(),
                                                           slot=spec.kind not in COORDINATOR_KINDS))
                self._log(j, "info", f"re-attached to pid {handle.pid}")
                self._mark(jid, urgent=True)
                continue
            j.handle = Handle(jid, job_dir)
            from engine.backends.local import EXIT_FILE, read_json

            data = read_json(job_dir / EXIT_FILE)
            if data is not None and isinstance(data.get("code"), int):
                status = ExitStatus(code=data["code"], reason=f"exit code {data['code']}")
                self._on_exit(j, status)
            else:
                self._finish(j, "interrupted", "process died while no engine was watching (no exit status)")

    def _replay(self, j: _Job, path: Path) -> None:
        """Apply a job's file from byte 0; side effects only beyond `persisted_offset`."""
        if j.persisted_offset > 0:
            before = read_events_until(path, j.persisted_offset)
            self._ingest(j, before, side_effects=False)
        self._ingest(j, read_events(path, j.offset), side_effects=True)

    def _ensure_loaded(self, j: _Job) -> None:
        """Finished jobs from the store get their curve and logs from the event file on demand."""
        if j.loaded:
            return
        j.loaded = True
        chunk = read_events(self.jobs_dir / j.state.id / EVENTS_FILE, 0)
        snapshot = replace(j.state)
        snapshot.metrics = dict(j.state.metrics)
        for ev in chunk.events:
            ups = apply_event(snapshot, ev)
            if ev.get("type") == "loss":
                j.curve.append(ups[0].data)
            elif ev.get("type") in ("log", "error", "artifact"):
                u = ups[0].data
                stamp = time.strftime("%H:%M:%S", time.localtime(ev.get("t") or 0))
                j.logs.append(f"{stamp} {u.get('level', 'info'):<7} {u.get('msg', '')}")

    # ---- the tick ------------------------------------------------------------------------
    def _io_phase(self, running: list[tuple[_Job, Handle, int]], want_telemetry: bool
                  ) -> tuple[list[tuple[_Job, ExitStatus | None, TailChunk]], list[str], Telemetry | None]:
        """Blocking reads, run in a thread: process status first, then events (so none are missed)."""
        out = []
        for j, h, off in running:
            status = self.backend.poll(h)
            chunk = read_events(h.job_dir / EVENTS_FILE, off)
            out.append((j, status, chunk))
        try:
            inbox = sorted(os.listdir(self.jobs_dir / INBOX))
        except OSError:
            inbox = []
        tel = None
        if want_telemetry and self.gpu_source is not None:
            try:
                tel = self.gpu_source.snapshot()
            except Exception:  # noqa: BLE001 - telemetry is best effort
                tel = None
        return out, inbox, tel

    def _take_inbox(self, names: list[str]) -> None:
        inbox = self.jobs_dir / INBOX
        for name in names:
            path = inbox / name
            if name.endswith(".tmp"):
                continue
            try:
                if name.endswith(".cancel"):
                    jid = name[: -len(".cancel")]
                    if jid in self._jobs and not self._jobs[jid].state.finished:
                        self.cancel(jid)
                elif name not in self._jobs:
                    spec = JobSpec.from_json((self.jobs_dir / name / "spec.json").read_text(encoding="utf-8"))
                    if spec.id != name:
                        raise JobSpecError(f"spec id {spec.id} does not match inbox marker {name}")
                    self._validate(spec)
                    self._enqueue(spec)
            except (OSError, ValueError) as exc:
                msg = f"spooled job {name} rejected: {exc}"
                log.error(msg)
                with contextlib.suppress(OSError):
                    (self.jobs_dir / name).mkdir(parents=True, exist_ok=True)
                    (self.jobs_dir / name / "rejected.txt").write_text(msg + "\n", encoding="utf-8")
            with contextlib.suppress(OSError):
                path.unlink()

    async def _tick(self) -> None:
        self.ticks += 1
        running = [(j, j.handle, j.offset) for j in self._jobs.values()
                   if j.state.state == "running" and j.handle is not None and not j.launching]
        now = time.time()
        want_tel = len(self.scheduler) > 0 or now - self._telemetry_at >= 1.0
        results, inbox, tel = await asyncio.to_thread(self._io_phase, running, want_tel)
        if tel is not None:
            self._telemetry, self._telemetry_at = tel, now
        for j, status, chunk in results:
            if j.state.state != "running":
                continue
            self._ingest(j, chunk)
            if status is not None:
                self._on_exit(j, status)
            else:
                self._check_stale(j, now)
        if inbox:
            self._take_inbox(inbox)
        await self._admit()
        await self._flush()

    def _check_stale(self, j: _Job, now: float) -> None:
        st = j.state
        last = st.last_heartbeat or st.started_at or now
        if now - last > self.stale_after_s:
            if st.warning is None:
                st.warning = f"no heartbeat for {now - last:.0f}s (process still alive)"
                self._publish(JobUpdate(st.id, "state", {"state": st.state, "warning": st.warning}))
                self._mark(st.id, urgent=True)

    async def _admit(self) -> None:
        if not len(self.scheduler):
            return
        owns = None
        if self._telemetry is not None and self._telemetry.available:
            def owns(job_id: str, pid: int) -> bool:
                j = self._jobs.get(job_id)
                return bool(j and j.handle and self.backend.owns_pid(j.handle, pid))
        admitted = self.scheduler.admit(None if self.backend_schedules else self._telemetry, owns)
        if not admitted:
            return
        launches = []
        for spec, placement in admitted:
            j = self._jobs[spec.id]
            j.launching = True
            st = j.state
            st.state = "running"
            st.device = placement.device
            st.started_at = time.time()
            launches.append((j, spec, placement, self._worker_env(placement)))
        done = await asyncio.to_thread(self._launch_all, launches)
        note = getattr(self.gpu_source, "note_job", None)
        for j, placement, handle, err in done:
            j.launching = False
            st = j.state
            if err is not None or handle is None:
                self._finish(j, "failed", f"could not start the worker: {err}")
                continue
            j.handle = handle
            st.pid = handle.pid
            self._watch_exit(j)
            if placement.gpu is not None and callable(note):
                note(st.id, placement.gpu, placement.vram_gb, handle.pid)
            self._log(j, "info", f"started on {placement.device} (pid {handle.pid})")
            self._publish(JobUpdate(st.id, "state", {"state": "running", "device": st.device, "pid": st.pid}))
            self._mark(st.id, urgent=True)
            if j.cancel_requested:
                self.backend.cancel(handle, self.cancel_grace_s)

    def _launch_all(self, launches: list[tuple[_Job, JobSpec, Placement, dict[str, str]]]
                    ) -> list[tuple[_Job, Placement, Handle | None, str | None]]:
        out: list[tuple[_Job, Placement, Handle | None, str | None]] = []
        for j, spec, placement, env in launches:
            try:
                h = self.backend.submit(spec, self.jobs_dir / spec.id, env)
                out.append((j, placement, h, None))
            except Exception as exc:  # noqa: BLE001 - reported as the job's failure
                out.append((j, placement, None, f"{type(exc).__name__}: {exc}"))
        return out

    def _worker_env(self, placement: Placement) -> dict[str, str]:
        from engine.paths import ENV_WORKSPACE
        from engine.worker import ENV_DEVICE, ENV_GRACE, ENV_HEARTBEAT

        env = dict(os.environ)
        env.update(self.extra_env)
        env[ENV_WORKSPACE] = str(self.workspace)
        env[ENV_HEARTBEAT] = f"{self.heartbeat_s:g}"
        # The worker gives up slightly before the engine's SIGKILL, so it can still write exit.json.
        env[ENV_GRACE] = f"{max(0.1, self.cancel_grace_s * 0.8):g}"
        env["PYTHONUNBUFFERED"] = "1"
        if placement.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(placement.gpu)
            env[ENV_DEVICE] = "cuda"
        else:
            if self._telemetry is not None and self._telemetry.available:
                env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job must not grab GPU memory
            env[ENV_DEVICE] = "cpu"
        return env


def read_events_until(path: Path, limit: int) -> TailChunk:
    """Complete lines that end at or before byte `limit` (used to split a replay)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit)
    except FileNotFoundError:
        return TailChunk([], 0)
    end = data.rfind(b"\n")
    if end < 0:
        return TailChunk([], 0)
    tmp = read_events_bytes(data[: end + 1])
    return TailChunk(tmp, end + 1)


def read_events_bytes(data: bytes) -> list[dict[str, Any]]:
    import json

    out: list[dict[str, Any]] = []
    for raw in data.splitlines():
        if raw.strip():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
    return out


__all__ = ["Engine", "JobState", "JobUpdate", "spool_submit", "spool_cancel", "FINAL_STATES"]
