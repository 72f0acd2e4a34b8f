"""The queue and admission control: which queued job starts next, and where.

Order: higher priority first, FIFO (submission order) within a priority; a queued job's
priority can change and it keeps its place among equals by arrival.

Two pools:
- CPU slots (`cpu_slots`, default 2) for jobs with `resources.gpus == 0`, and for every job when
  the machine has no GPU.
- GPUs: a job goes to a GPU whose free memory (from the GPU source) minus a reserve
  (`vram_reserve_gb`, default 2 GB) minus VRAM promised to jobs admitted there but not yet
  visible in NVML covers its estimate `resources.vram_gb`. Small jobs therefore pack several per
  GPU and a big one waits. Within the GPU pool the head of the queue blocks the jobs behind it
  (no back-filling), so a big job cannot be starved forever by a stream of small ones.

Measured peaks (`engine.peaks.PeakBook`, `self.peaks`): when earlier jobs with the same footprint
(kind, model, preset, batch, context, dtype) reported their peaks, a GPU job reserves the measured
VRAM peak × margin instead of its `resources.vram_gb` guess, and a CPU job also needs its measured
peak RSS to fit in free host RAM (minus `RAM_RESERVE_GB`) — except when no other CPU job runs, so a
job bigger than the machine's free RAM still runs alone instead of waiting forever.

Coordinator jobs (`COORDINATOR_KINDS`: sweep, pipeline) take no CPU slot: they only wait on the
jobs they hand out, which need the slots.

Threads: a CPU-slot job is admitted for `cores // cpu_slots` cores (at least one) and its worker
is capped at that many compute threads; GPU jobs and coordinators get one (engine.threads).

The scheduler is synchronous, pure bookkeeping; the controller's single poller calls
`admit()` once per tick with a fresh telemetry snapshot.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine import threads
from engine.gpu import Telemetry
from engine.jobs import JobSpec, JobSpecError
from engine.peaks import PeakBook

#: Coordinator jobs hand out other jobs and wait on them (a sweep's trials, a pipeline's steps), so
#: they never hold a CPU slot: one would otherwise wait forever for children that cannot start
#: (a sweep on a 1-slot engine, or two sweeps on two slots).
COORDINATOR_KINDS: frozenset[str] = frozenset({"sweep", "pipeline"})


@dataclass
class Placement:
    """Where an admitted job runs: a CPU slot (gpu None) or one GPU index."""

    gpu: int | None
    vram_gb: float = 0.0
    admitted_at: float = 0.0
    slot: bool = True  # False for a coordinator (counts against no pool)
    threads: int = 1  # compute threads the worker may use (engine.threads): its share of the cores
    rss_gb: float = 0.0  # measured peak RSS reserved for a CPU job (0 = none known)
    source: str = "estimate"  # where vram_gb came from: "estimate" or "measured" (engine.peaks.Need)
    measured_gb: float | None = None  # earlier jobs' measured VRAM peak of this footprint (no margin)

    @property
    def device(self) -> str:
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"


@dataclass
class _Entry:
    spec: JobSpec
    seq: int


class Scheduler:
    #: Host RAM kept free when CPU jobs are admitted by their measured peak RSS.
    RAM_RESERVE_GB = 1.0

    def __init__(self, cpu_slots: int = 2, vram_reserve_gb: float = 2.0,
                 promise_ttl_s: float = 120.0, cores: int | None = None) -> None:
        if cpu_slots < 1:
            raise ValueError(f"cpu_slots must be >= 1, got {cpu_slots}")
        if vram_reserve_gb < 0:
            raise ValueError(f"vram_reserve_gb must be >= 0, got {vram_reserve_gb}")
        self.cpu_slots = cpu_slots
        self.vram_reserve_gb = vram_reserve_gb
        self.promise_ttl_s = promise_ttl_s
        #: Threads per CPU-slot job: slots × share ≤ the machine's cores (engine.threads).
        self.slot_threads = threads.share(cpu_slots, cores)
        self._queue: dict[str, _Entry] = {}
        self._seq = itertools.count()
        self.running: dict[str, Placement] = {}
        self.peaks = PeakBook()  # the engine replaces it with the workspace's persisted book

    # ---- queue -------------------------------------------------------------------------------
    def push(self, spec: JobSpec) -> None:
        if spec.id in self._queue or spec.id in self.running:
            raise JobSpecError(f"job {spec.id} is already queued or running")
        self._queue[spec.id] = _Entry(spec, next(self._seq))

    def requeue(self, spec: JobSpec) -> None:
        """Queue again a job that was admitted but never ran (engine.launches), in its place by arrival:
        ahead of every queued job created after it, behind those created before it (priority first, as always)."""
        self.push(spec)
        entries = sorted(self._queue.values(), key=lambda e: e.seq)
        mine = entries.pop()
        at = next((i for i, e in enumerate(entries) if e.spec.created_at > spec.created_at), len(entries))
        entries.insert(at, mine)
        for e in entries:
            e.seq = next(self._seq)

    def remove(self, job_id: str) -> JobSpec | None:
        e = self._queue.pop(job_id, None)
        return e.spec if e else None

    def set_priority(self, job_id: str, priority: int) -> JobSpec:
        e = self._queue.get(job_id)
        if e is None:
            raise KeyError(job_id)
        e.spec = e.spec.with_priority(priority)
        return e.spec

    def is_queued(self, job_id: str) -> bool:
        return job_id in self._queue

    def queued(self) -> list[JobSpec]:
        """Queued specs in the order they would start."""
        return [e.spec for e in sorted(self._queue.values(), key=lambda e: (-e.spec.priority, e.seq))]

    def __len__(self) -> int:
        return len(self._queue)

    # ---- running -----------------------------------------------------------------------------
    def mark_running(self, job_id: str, placement: Placement) -> None:
        """Record a job that runs without having been admitted here (re-attached after restart)."""
        self.running[job_id] = placement

    def release(self, job_id: str) -> Placement | None:
        return self.running.pop(job_id, None)

    def cpu_in_use(self) -> int:
        return sum(1 for p in self.running.values() if p.gpu is None and p.slot)

    # ---- admission ---------------------------------------------------------------------------
    def check_fits(self, spec: JobSpec, telemetry: Telemetry | None) -> None:
        """Refuse at submit time a GPU job that could never be admitted on any GPU here."""
        if telemetry is None or not telemetry.available or spec.resources.gpus <= 0:
            return
        totals = [g.mem_total_gb for g in telemetry.gpus if g.mem_total_gb is not None]
        if totals and spec.resources.vram_gb + self.vram_reserve_gb > max(totals):
            raise JobSpecError(
                f"job needs {spec.resources.vram_gb:g} GB VRAM + {self.vram_reserve_gb:g} GB reserve, "
                f"but the largest GPU has {max(totals):.1f} GB"
            )

    def _pending_gb(self, telemetry: Telemetry, owns: Callable[[str, int], bool] | None,
                    now: float) -> dict[int, float]:
        """VRAM promised to admitted jobs that NVML does not show yet, per GPU."""
        pending: dict[int, float] = {}
        by_index = {g.index: g for g in telemetry.gpus}
        for job_id, p in self.running.items():
            if p.gpu is None or p.vram_gb <= 0:
                continue
            g = by_index.get(p.gpu)
            if g is not None and g.processes is not None and owns is not None:
                seen = sum(m or 0.0 for pid, m in g.processes if owns(job_id, pid))
                missing = max(0.0, p.vram_gb - seen)
            else:  # no per-process figures: trust the promise for a while, then NVML's total
                missing = p.vram_gb if now - p.admitted_at < self.promise_ttl_s else 0.0
            pending[p.gpu] = pending.get(p.gpu, 0.0) + missing
        return pending

    def _ram_room(self, telemetry: Telemetry | None, now: float) -> float | None:
        """Free host RAM minus the reserve and the RSS promised to recently admitted CPU jobs."""
        if telemetry is None or telemetry.ram_total_gb is None or telemetry.ram_used_gb is None:
            return None
        promised = sum(p.rss_gb for p in self.running.values()
                       if p.gpu is None and now - p.admitted_at < self.promise_ttl_s)
        return telemetry.ram_total_gb - telemetry.ram_used_gb - self.RAM_RESERVE_GB - promised

    def admit(self, telemetry: Telemetry | None = None,
              owns: Callable[[str, int], bool] | None = None) -> list[tuple[JobSpec, Placement]]:
        """Pop every queued job that can start now, in order, with its placement.

        `owns(job_id, pid)` tells whether a GPU process belongs to a running job; it lets the
        scheduler see how much of a job's promised VRAM NVML already counts.
        """
        now = time.time()
        use_gpus = telemetry is not None and telemetry.available and bool(telemetry.gpus)
        free: dict[int, float] = {}
        if use_gpus:
            assert telemetry is not None
            pending = self._pending_gb(telemetry, owns, now)
            for g in telemetry.gpus:
                f = g.mem_free_gb
                if f is not None:
                    free[g.index] = f - self.vram_reserve_gb - pending.get(g.index, 0.0)
        cpu_free = self.cpu_slots - self.cpu_in_use()
        ram_room = self._ram_room(telemetry, now)
        cpu_alone = self.cpu_in_use() == 0
        gpu_blocked = False
        out: list[tuple[JobSpec, Placement]] = []
        for spec in self.queued():
            wants_gpu = use_gpus and spec.resources.gpus > 0
            if spec.kind in COORDINATOR_KINDS and not wants_gpu:
                placement = Placement(gpu=None, admitted_at=now, slot=False)
            elif not wants_gpu:
                if cpu_free <= 0:
                    continue
                rss = self.peaks.need(spec, False).rss_gb or 0.0
                if ram_room is not None and rss > ram_room and not cpu_alone:
                    continue
                cpu_free -= 1
                cpu_alone = False
                if ram_room is not None:
                    ram_room -= rss
                placement = Placement(gpu=None, admitted_at=now, threads=self.slot_threads, rss_gb=rss)
            else:
                if gpu_blocked:
                    continue
                nd = self.peaks.need(spec, True)
                need = nd.vram_gb
                # best fit: the GPU with the least room that still fits (keeps big holes for big jobs)
                fits = [(room, i) for i, room in free.items() if room >= need]
                if not fits:
                    gpu_blocked = True
                    continue
                _, idx = min(fits)
                free[idx] -= need
                placement = Placement(gpu=idx, vram_gb=need, admitted_at=now, source=nd.source,
                                      measured_gb=nd.measured_gb)
            del self._queue[spec.id]
            self.running[spec.id] = placement
            out.append((spec, placement))
        return out
