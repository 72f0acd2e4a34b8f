"""GPU telemetry for the scheduler and the console: NVML when there is a driver, psutil otherwise.

Follows nvitop's approach with nvidia-ml-py (`import pynvml`): one handle per device, every NVML
call wrapped so a failing query (unsupported on this board, a lost GPU, a permissions problem)
makes that one field None ("n/a") instead of raising; a machine with no driver or no GPU gives
`available=False` with a message and still reports CPU/RAM from psutil.

`FakeGpuSource` stands in for GPUs in tests and UI snapshots: its numbers are deterministic, and
its used memory tracks the VRAM of the jobs admitted to it, so admission tests are meaningful.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

GIB = 1024**3
T = TypeVar("T")


@dataclass
class GpuInfo:
    index: int
    name: str | None = None
    mem_used_gb: float | None = None
    mem_total_gb: float | None = None
    util_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    processes: list[tuple[int, float | None]] | None = None  # (pid, mem_gb); None = n/a
    uuid: str | None = None  # "GPU-…": the identity CUDA_VISIBLE_DEVICES accepts in any device order

    @property
    def mem_free_gb(self) -> float | None:
        if self.mem_used_gb is None or self.mem_total_gb is None:
            return None
        return max(0.0, self.mem_total_gb - self.mem_used_gb)


@dataclass
class Telemetry:
    gpus: list[GpuInfo] = field(default_factory=list)
    cpu_percent: float | None = None
    ram_used_gb: float | None = None
    ram_total_gb: float | None = None
    available: bool = False
    message: str = ""


class GpuSource:
    """What reports telemetry; the scheduler calls `snapshot()` once per admission pass.

    The engine tells every source where it placed a job (`note_job`) and when the job ended
    (`forget_job`); real GPUs measure their memory themselves and ignore both, a fake counts them.
    """

    def snapshot(self) -> Telemetry:
        raise NotImplementedError

    def note_job(self, job_id: str, gpu: int, vram_gb: float, pid: int | None = None) -> None:
        """Job `job_id` was started on GPU `gpu` holding `vram_gb` (process `pid`)."""

    def forget_job(self, job_id: str) -> None:
        """Job `job_id` ended."""


def _safe(fn: Callable[[], T]) -> T | None:
    """Run one NVML/psutil query; any failure is "n/a" (None), never an exception."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - NVML raises many NVMLError subclasses; all mean n/a
        return None


def _host_figures(t: Telemetry) -> None:
    import psutil

    t.cpu_percent = _safe(lambda: float(psutil.cpu_percent(interval=None)))
    vm = _safe(psutil.virtual_memory)
    if vm is not None:
        t.ram_used_gb = (vm.total - vm.available) / GIB
        t.ram_total_gb = vm.total / GIB


class NvmlSource(GpuSource):
    """Real GPUs via NVML. Construct once; `snapshot()` is safe to call from a thread worker."""

    def __init__(self) -> None:
        self._nv: Any = None
        self._handles: list[Any] = []
        self.message = ""
        try:
            import pynvml

            pynvml.nvmlInit()
            n = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
            self._nv = pynvml
            if n == 0:
                self.message = "NVIDIA driver found but no GPU"
        except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            self.message = f"no GPU telemetry: {exc or type(exc).__name__}"
            self._nv = None

    @property
    def available(self) -> bool:
        return self._nv is not None and bool(self._handles)

    def _gpu(self, i: int, h: Any) -> GpuInfo:
        nv = self._nv
        info = GpuInfo(index=i)
        name = _safe(lambda: nv.nvmlDeviceGetName(h))
        info.name = name.decode() if isinstance(name, bytes) else name
        uuid = _safe(lambda: nv.nvmlDeviceGetUUID(h))
        info.uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        mem = _safe(lambda: nv.nvmlDeviceGetMemoryInfo(h))
        if mem is not None:
            info.mem_used_gb = _safe(lambda: mem.used / GIB)
            info.mem_total_gb = _safe(lambda: mem.total / GIB)
        util = _safe(lambda: nv.nvmlDeviceGetUtilizationRates(h))
        info.util_pct = _safe(lambda: float(util.gpu)) if util is not None else None
        info.temp_c = _safe(lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
        info.power_w = _safe(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
        procs = _safe(lambda: nv.nvmlDeviceGetComputeRunningProcesses(h))
        if procs is not None:
            out: list[tuple[int, float | None]] = []
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                # NVML reports NVML_VALUE_NOT_AVAILABLE (a huge int) or None when it cannot tell.
                mem_gb = used / GIB if isinstance(used, int) and used < (1 << 60) else None
                out.append((int(p.pid), mem_gb))
            info.processes = out
        return info

    def snapshot(self) -> Telemetry:
        t = Telemetry(available=self.available, message=self.message)
        if self.available:
            t.gpus = [self._gpu(i, h) for i, h in enumerate(self._handles)]
        _host_figures(t)
        return t

    def close(self) -> None:
        if self._nv is not None:
            _safe(self._nv.nvmlShutdown)
            self._nv = None


class FakeGpuSource(GpuSource):
    """`n_gpus` identical fake GPUs of `total_gb`; deterministic numbers for tests and snapshots.

    The engine tells it which job went where (`note_job`/`forget_job`); used memory is the base
    usage plus the VRAM of those jobs, and each job shows as a process with its pid.
    """

    def __init__(self, n_gpus: int = 1, total_gb: float = 80.0, *, base_used_gb: float = 0.5,
                 name: str = "Fake GPU", uuids: list[str] | None = None) -> None:
        self.n_gpus = n_gpus
        self.uuids = list(uuids) if uuids is not None else [f"GPU-fake-{i:04d}" for i in range(n_gpus)]
        self.total_gb = float(total_gb)
        self.base_used_gb = float(base_used_gb)
        self.name = name
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[int, float, int | None]] = {}  # job -> (gpu, vram_gb, pid)

    def note_job(self, job_id: str, gpu: int, vram_gb: float, pid: int | None = None) -> None:
        with self._lock:
            self._jobs[job_id] = (gpu, float(vram_gb), pid)

    def forget_job(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def snapshot(self) -> Telemetry:
        with self._lock:
            jobs = list(self._jobs.values())
        gpus = []
        for i in range(self.n_gpus):
            mine = [(pid, v) for g, v, pid in jobs if g == i]
            used = min(self.total_gb, self.base_used_gb + sum(v for _, v in mine))
            gpus.append(GpuInfo(
                index=i, name=self.name, mem_used_gb=round(used, 3), mem_total_gb=self.total_gb,
                util_pct=float(min(100, 40 * len(mine))), temp_c=40.0 + 5 * len(mine),
                power_w=60.0 + 100.0 * len(mine),
                processes=[(pid, v) for pid, v in mine if pid is not None], uuid=self.uuids[i],
            ))
        return Telemetry(gpus=gpus, cpu_percent=12.5, ram_used_gb=16.0, ram_total_gb=64.0,
                         available=self.n_gpus > 0,
                         message="" if self.n_gpus else "fake source with no GPU")


class CpuOnlySource(GpuSource):
    """No GPUs by design (e.g. `--cpu`): host figures only."""

    def __init__(self, message: str = "GPU use disabled") -> None:
        self.message = message

    def snapshot(self) -> Telemetry:
        t = Telemetry(available=False, message=self.message)
        _host_figures(t)
        return t


def detect_source() -> GpuSource:
    """NVML when a driver and at least one GPU answer, else a CPU-only source saying why."""
    src = NvmlSource()
    if src.available:
        return src
    msg = src.message or "no GPU"
    src.close()
    return CpuOnlySource(msg)


def pin_env(gpu: int | None, telemetry: Telemetry | None, *, hide_gpus: bool) -> dict[str, str]:
    """The environment that puts a worker on NVML GPU `gpu` (None: a CPU job).

    NVML numbers GPUs by PCI bus; CUDA numbers them fastest-first unless CUDA_DEVICE_ORDER says
    PCI_BUS_ID, so an index alone can name another card on a mixed host. The worker is pinned by
    the GPU's UUID (valid in any order), and CUDA_DEVICE_ORDER=PCI_BUS_ID is set for every worker
    so that an index (when NVML gave no UUID) or a child process counting devices agrees with NVML.
    A CPU job on a GPU host sees no GPU at all (`hide_gpus`), so it cannot grab GPU memory.
    """
    from engine.worker import ENV_DEVICE

    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    if gpu is None:
        if hide_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ""
        env[ENV_DEVICE] = "cpu"
        return env
    info = next((g for g in (telemetry.gpus if telemetry else []) if g.index == gpu), None)
    env["CUDA_VISIBLE_DEVICES"] = info.uuid if info is not None and info.uuid else str(gpu)
    env[ENV_DEVICE] = "cuda"
    return env


def gpu_free_gb(t: Telemetry) -> dict[int, float]:
    """Free memory per GPU index for GPUs whose memory figures are known."""
    out: dict[int, float] = {}
    for g in t.gpus:
        free = g.mem_free_gb
        if free is not None:
            out[g.index] = free
    return out
