"""The Engine: queue, launch, watch and record jobs; the only writer of job data to the store.

A facade over the modules that do the work, each with one responsibility:
  engine.jobtable     in-memory jobs, subscribers, how events and exits change a job
  engine.intake       validation of every spec, the spool inbox
  engine.poller       the one periodic task (poll, tail, admit, launch, persist)
  engine.recovery     rebuilding jobs from the store at start (re-attach or mark interrupted)
  engine.persistence  every store write (job records, result payloads), in order, in a thread
  engine.worker_env   the environment a worker process starts with (cores, GPU, heartbeat)
The public API below is what consoles, the engine service and tests call; everything it does
runs on the caller's event loop, with blocking I/O in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.backends.base import Backend
from engine.gpu import GpuSource, Telemetry
from engine.intake import Intake, spool_cancel, spool_submit
from engine.jobs import JobSpec, JobSpecError
from engine.jobtable import JobTable
from engine.peaks import PEAKS_FILE, PeakBook
from engine.persistence import Persistence
from engine.poller import Poller
from engine.recovery import ensure_loaded, load_finished, recover
from engine.scheduler import Placement, Scheduler
from engine.state import FINAL_STATES, JobState, JobUpdate, Status
from store.workspace import Workspace

if TYPE_CHECKING:
    from store import Store


class Engine:
    def __init__(self, workspace: Path, *, store: Store | Any, backend: Backend | None = None,
                 cpu_slots: int = 2, gpu_source: GpuSource | None = None, poll_interval: float = 0.2,
                 vram_reserve_gb: float = 2.0, stale_after_s: float = 30.0, cancel_grace_s: float = 5.0,
                 heartbeat_s: float = 5.0, persist_interval: float = 1.0, validate_symbols: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.workspace = Path(workspace).resolve()
        self.jobs_dir = Workspace(self.workspace).jobs_dir
        self.store = store
        if backend is None:
            # `--backend/--address` reach every Engine via env.
            from engine.backends import backend_from_env

            backend = backend_from_env(Path(workspace))
        self.backend: Backend = backend
        self.gpu_source = gpu_source
        self.poll_interval = poll_interval
        self.stale_after_s = stale_after_s
        self.cancel_grace_s = cancel_grace_s
        self.heartbeat_s = heartbeat_s
        self.validate_symbols = validate_symbols
        self.extra_env = dict(env or {})
        # A backend that admits by itself (Ray) gets every queued job up to its `max_in_flight`;
        # the local GPUs' telemetry must not gate jobs that run elsewhere.
        self.backend_schedules = backend.schedules_resources
        if self.backend_schedules:
            cpu_slots = max(cpu_slots, backend.max_in_flight)
        self.scheduler = Scheduler(cpu_slots=cpu_slots, vram_reserve_gb=vram_reserve_gb)
        self.scheduler.peaks = PeakBook(self.workspace / PEAKS_FILE)  # measured peaks of earlier jobs
        self.telemetry_snapshot: Telemetry | None = None
        self.table = JobTable(self.jobs_dir, self.scheduler)
        self.table.on_finish.append(self._forget_gpu)
        self.persistence = Persistence(store, self.table, backend_name=backend.name,
                                       persist_interval=persist_interval)
        self.intake = Intake(self.workspace, self.table, self.scheduler, validate_symbols=validate_symbols,
                             backend_schedules=self.backend_schedules, telemetry=lambda: self.telemetry_snapshot,
                             persistence=self.persistence)
        self.table.load = self._load_old_job
        self.poller = Poller(self)

    def _load_old_job(self, job_id: str) -> Any:
        """A finished job the engine did not load at start (see persistence.RECENT_FINISHED)."""
        rec = self.persistence.load_job(job_id) if isinstance(job_id, str) else None
        return load_finished(self.table, self.backend, rec)

    @property
    def store_errors(self) -> list[str]:
        return self.persistence.errors

    @property
    def ticks(self) -> int:
        return self.poller.ticks

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Recover jobs from the store, then start the poller."""
        from engine.jobs import inbox_dir

        inbox_dir(self.workspace).mkdir(parents=True, exist_ok=True)
        if self.gpu_source is None:
            from engine.gpu import detect_source

            self.gpu_source = await asyncio.to_thread(detect_source)
        self.telemetry_snapshot = await asyncio.to_thread(self.gpu_source.snapshot)
        if self.validate_symbols:  # the data layer imports pandas: do that off the loop, once
            await asyncio.to_thread(self.known_symbols)
        records = await asyncio.to_thread(self.persistence.load_jobs)
        self.table.held = []
        try:
            await asyncio.to_thread(recover, self.table, self.backend, records)
        finally:
            self.table.release_held()
        await self.persistence.flush()
        self.poller.start()

    async def stop(self, cancel_running: bool = False) -> None:
        """Stop watching. Jobs keep running (detached) unless `cancel_running`."""
        if cancel_running:
            for j in self.table.running():
                self.cancel(j.state.id)
            deadline = time.time() + self.cancel_grace_s + 2.0
            while self.running_count() and time.time() < deadline and self.poller.active:
                await asyncio.sleep(self.poll_interval)
        await self.poller.stop()
        await self.persistence.flush(force=True)
        self.backend.close()

    # ---- reading ---------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue[JobUpdate]:
        q: asyncio.Queue[JobUpdate] = asyncio.Queue()
        self.table.subs.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[JobUpdate]) -> None:
        with contextlib.suppress(ValueError):
            self.table.subs.remove(q)

    def jobs(self) -> list[JobState]:
        return sorted((j.state for j in self.table.jobs.values()), key=lambda s: (s.created_at, s.id))

    def job(self, job_id: str) -> JobState | None:
        j = self.table.get(job_id)
        return j.state if j else None

    def spec(self, job_id: str) -> JobSpec | None:
        j = self.table.get(job_id)
        return j.spec if j else None

    def queued(self) -> list[JobState]:
        """Queued jobs in the order they will start."""
        jobs = self.table.jobs
        return [jobs[s.id].state for s in self.scheduler.queued() if s.id in jobs]

    def running_count(self) -> int:
        return len(self.table.running())

    def telemetry(self) -> Telemetry | None:
        """The latest GPU/CPU snapshot the scheduler used."""
        return self.telemetry_snapshot

    def job_for_pid(self, pid: int) -> str | None:
        """Which running job a (GPU) process belongs to, by pid or process group."""
        for j in self.table.running():
            if j.handle is not None and self.backend.owns_pid(j.handle, pid):
                return j.state.id
        return None

    def curve(self, job_id: str) -> list[dict[str, Any]]:
        j = self.table.get(job_id)
        if j is None:
            return []
        ensure_loaded(self.table, j)
        return list(j.curve)

    def log_tail(self, job_id: str, n: int = 200) -> list[str]:
        j = self.table.get(job_id)
        if j is None:
            return []
        ensure_loaded(self.table, j)
        return list(j.logs)[-n:]

    def known_symbols(self) -> set[str]:
        """Symbols with a CSV in the data folders (cached 2 s)."""
        return self.intake.known_symbols()

    # ---- acting ----------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> JobState:
        """Validate and queue a job; raises JobSpecError (and queues nothing) when it is invalid."""
        return self.intake.submit(spec)

    def cancel(self, job_id: str) -> None:
        """Queued: leaves the queue. Running: SIGTERM to its process group, SIGKILL after the grace."""
        j = self.table.require(job_id)
        if j.state.finished:
            raise JobSpecError(f"job {job_id} is already {j.state.state}")
        if j.state.state == Status.QUEUED:
            self.scheduler.remove(job_id)
            self.table.finish(j, Status.CANCELLED, "cancelled while queued")
            return
        if not j.cancel_requested:
            j.cancel_requested = True
            self.table.log(j, "warning", "cancel requested")
            if j.handle is not None and not j.launching:
                self.backend.cancel(j.handle, self.cancel_grace_s)
            self.poller.poke()

    def retry(self, job_id: str) -> JobState:
        """A new attempt of a finished job (same spec); an interrupted one resumes."""
        j = self.table.require(job_id)
        if not j.state.finished:
            raise JobSpecError(f"job {job_id} is {j.state.state}; only finished jobs can be retried")
        spec = j.spec.retry()
        if j.state.state == Status.INTERRUPTED:
            spec = replace(spec, params={**spec.params, "resume": True})
        return self.submit(spec)

    def set_priority(self, job_id: str, priority: int) -> None:
        j = self.table.require(job_id)
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise JobSpecError(f"priority must be an integer, got {priority!r}")
        if j.state.state != Status.QUEUED:
            raise JobSpecError(f"job {job_id} is {j.state.state}; only queued jobs can be re-prioritised")
        j.spec = self.scheduler.set_priority(job_id, priority)
        j.state.priority = priority
        self.table.publish(JobUpdate(job_id, "state", {"state": Status.QUEUED, "priority": priority}))
        self.table.mark(job_id, urgent=True)
        self.poller.poke()

    # ---- workers ---------------------------------------------------------------------------
    def worker_env(self, placement: Placement) -> dict[str, str]:
        """The environment of a worker placed on a CPU slot or one GPU (engine.worker_env)."""
        from engine.worker_env import worker_env

        return worker_env(placement, workspace=self.workspace, heartbeat_s=self.heartbeat_s,
                          cancel_grace_s=self.cancel_grace_s, telemetry=self.telemetry_snapshot,
                          extra=self.extra_env)

    def _forget_gpu(self, j: Any) -> None:
        if self.gpu_source is not None:
            self.gpu_source.forget_job(j.state.id)


__all__ = ["Engine", "JobState", "JobUpdate", "spool_submit", "spool_cancel", "FINAL_STATES"]
