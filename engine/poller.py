"""The engine's one periodic task: each tick polls, tails, admits, launches and persists.

  1. I/O in a thread: pick up spooled submissions (`jobs/inbox/`), poll each running job's
     process, read new complete lines from its `events.jsonl`, take a GPU snapshot when needed;
  2. on the loop: fold events into job state (engine.jobtable), finish jobs whose process ended,
     flag stale heartbeats;
  3. admission (engine.scheduler) and launching (the backend, in a thread);
  4. store writes (engine.persistence), coalesced, in a thread.
No timer per job, no blocking call on the event loop. The poller sleeps `poll_interval` between
ticks, less while a job is about to end, and wakes at once on `poke()` (a submit, a cancel, or a
job's process ending where the backend gives an exit file descriptor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from engine.backends.base import ExitStatus, Handle
from engine.deaths import oom_kills
from engine.events import TailChunk, read_events
from engine.gpu import Telemetry
from engine.intake import list_inbox
from engine.jobs import JobDir, JobSpec
from engine.jobtable import LiveJob
from engine.launches import ENV_LAUNCH
from engine.recovery import requeue_unstarted
from engine.scheduler import Placement
from engine.state import JobUpdate, Status

if TYPE_CHECKING:
    from engine.controller import Engine

log = logging.getLogger("engine")
_NOT_RECORDED = "the store did not record the job as running"


class Poller:
    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.table = eng.table
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._telemetry_at = 0.0
        self.table.wake = self.poke
        self.table.on_finish.append(self.unwatch_exit)

    # ---- running ---------------------------------------------------------------------------
    def start(self) -> None:
        self._telemetry_at = time.time()
        for j in self.table.running():
            self.watch_exit(j)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="engine-poller")

    @property
    def active(self) -> bool:
        return self._task is not None

    async def stop(self) -> None:
        if self._task is not None:
            # Let the current tick finish (its store writes included) rather than cancel it mid-write.
            self._stopping = True
            self.poke()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for j in self.table.jobs.values():
            self.unwatch_exit(j)

    def poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await self.tick()
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
        interval = self.eng.poll_interval
        for j in self.table.jobs.values():
            if j.state.state == Status.RUNNING and (j.has_result or j.cancel_requested or j.state.reason):
                return min(interval, 0.01)
        return interval

    # ---- exit notification -------------------------------------------------------------------
    def watch_exit(self, j: LiveJob) -> None:
        """Wake the poller the moment this job's process ends (pidfd), where the backend can."""
        backend = self.eng.backend
        if j.handle is None or not backend.has_exit_fd or j.exit_fd is not None:
            return
        fd = backend.exit_fd(j.handle)
        if fd is None:
            return
        try:
            asyncio.get_running_loop().add_reader(fd, self.poke)
            j.exit_fd = fd
        except (RuntimeError, OSError, ValueError):
            os.close(fd)

    def unwatch_exit(self, j: LiveJob) -> None:
        if j.exit_fd is None:
            return
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            asyncio.get_running_loop().remove_reader(j.exit_fd)
        with contextlib.suppress(OSError):
            os.close(j.exit_fd)
        j.exit_fd = None

    # ---- the tick ------------------------------------------------------------------------------
    def _io_phase(self, running: list[tuple[LiveJob, Handle, int]], want_telemetry: bool
                  ) -> tuple[list[tuple[LiveJob, ExitStatus | None, TailChunk]], list[str], Telemetry | None]:
        """Blocking reads, run in a thread: process status first, then events (so none are missed)."""
        out = []
        backend = self.eng.backend
        for j, h, off in running:
            status = backend.poll(h)
            chunk = read_events(JobDir(h.job_dir).events, off)
            out.append((j, status, chunk))
        inbox = list_inbox(self.eng.workspace)
        tel = None
        source = self.eng.gpu_source
        if want_telemetry and source is not None:
            try:
                tel = source.snapshot()
            except Exception:  # noqa: BLE001 - telemetry is best effort
                tel = None
        return out, inbox, tel

    async def tick(self) -> None:
        eng = self.eng
        self.ticks += 1
        running = [(j, j.handle, j.offset) for j in self.table.running()
                   if j.handle is not None and not j.launching]
        now = time.time()
        want_tel = len(eng.scheduler) > 0 or now - self._telemetry_at >= 1.0
        results, inbox, tel = await asyncio.to_thread(self._io_phase, running, want_tel)
        if tel is not None:
            eng.telemetry_snapshot, self._telemetry_at = tel, now
        for j, status, chunk in results:
            if j.state.state != Status.RUNNING:
                continue
            self.table.ingest(j, chunk)
            if status is not None:
                # A worker an earlier engine started that ended with no exit status and nothing written
                # may never have claimed its launch (a warm worker whose request never arrived).
                if not (j.handle is not None and j.handle.attached and status.code is None
                        and requeue_unstarted(self.table, eng.backend, j)):
                    self.table.on_exit(j, status)
            else:
                self._check_stale(j, now)
        if inbox:
            eng.intake.take_inbox(inbox, eng.cancel)
        await self._admit()
        await eng.persistence.flush()

    def _check_stale(self, j: LiveJob, now: float) -> None:
        st = j.state
        last = st.last_heartbeat or st.started_at or now
        if now - last > self.eng.stale_after_s:
            if st.warning is None:
                st.warning = f"no heartbeat for {now - last:.0f}s (process still alive)"
                self.table.publish(JobUpdate(st.id, "state", {"state": st.state, "warning": st.warning}))
                self.table.mark(st.id, urgent=True)

    async def _admit(self) -> None:
        eng = self.eng
        if not len(eng.scheduler):
            return
        tel = eng.telemetry_snapshot
        owns = None
        if tel is not None and tel.available:
            def owns(job_id: str, pid: int) -> bool:
                j = self.table.jobs.get(job_id)
                return bool(j and j.handle and eng.backend.owns_pid(j.handle, pid))
        admitted = eng.scheduler.admit(None if eng.backend_schedules else tel, owns)
        if not admitted:
            return
        launches = []
        for spec, placement in admitted:
            j = self.table.jobs[spec.id]
            j.launching = True
            st = j.state
            st.state = Status.RUNNING
            st.device = placement.device
            st.started_at = time.time()
            st.launches += 1
            st.reason = None  # a job queued again says why until it starts (engine.launches)
            if placement.gpu is not None:
                st.vram_reserved_gb, st.vram_measured_gb = placement.vram_gb, placement.measured_gb
            launches.append((j, spec, placement, {**eng.worker_env(placement), ENV_LAUNCH: str(st.launches)},
                             eng.persistence.record(j)))
        oom_base = oom_kills()
        done = await asyncio.to_thread(self._launch_all, launches)
        for j, placement, handle, err in done:
            j.launching = False
            st = j.state
            if err == _NOT_RECORDED:  # the store refused: not launched, back in its place
                st.state, st.device, st.started_at = Status.QUEUED, None, None
                st.launches -= 1
                eng.scheduler.release(st.id)
                eng.scheduler.requeue(j.spec)
                continue
            if err is not None or handle is None:
                self.table.finish(j, Status.FAILED, f"could not start the worker: {err}")
                continue
            j.handle = handle
            j.oom_base = oom_base
            st.pid = handle.pid
            self.watch_exit(j)
            if placement.gpu is not None and eng.gpu_source is not None:
                eng.gpu_source.note_job(st.id, placement.gpu, placement.vram_gb, handle.pid)
            held = f"; {placement.vram_gb:g} GB VRAM reserved ({placement.source})" if placement.gpu is not None else ""
            self.table.log(j, "info", f"started on {placement.device} (pid {handle.pid}){held}")
            self.table.publish(JobUpdate(st.id, "state", {"state": Status.RUNNING, "device": st.device,
                                                          "pid": st.pid}))
            self.table.mark(st.id, urgent=True)
            if j.cancel_requested:
                eng.backend.cancel(handle, eng.cancel_grace_s)

    def _launch_all(self, launches: list[tuple[LiveJob, JobSpec, Placement, dict[str, str], dict[str, Any]]]
                    ) -> list[tuple[LiveJob, Placement, Handle | None, str | None]]:
        """Each job is recorded as running (with its launch number) and then started, one job at a time:
        an engine that dies in between leaves a job the next one re-attaches, applies the dead-job rule to,
        or queues again when its worker provably never started (engine.launches), never one it launches
        a second time; one at a time, so that window is one worker's start, not a whole batch's."""
        out: list[tuple[LiveJob, Placement, Handle | None, str | None]] = []
        for j, spec, placement, env, rec in launches:
            if not self.eng.persistence.commit_records([(j, rec)]):
                out.append((j, placement, None, _NOT_RECORDED))
                continue
            try:
                h = self.eng.backend.submit(spec, self.table.dir(spec.id).path, env)
                out.append((j, placement, h, None))
            except Exception as exc:  # noqa: BLE001 - reported as the job's failure
                out.append((j, placement, None, f"{type(exc).__name__}: {exc}"))
        return out
