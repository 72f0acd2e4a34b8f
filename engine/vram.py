"""Measuring a job's memory peaks inside its worker (light: no torch, no pydantic at import).

Why: a job's `resources.vram_gb` is a guess made at submit time (or 0). The worker measures its own
peaks (`PeakMeter`: `torch.cuda.max_memory_allocated`/`max_memory_reserved`, NVML's per-process
figure sampled while the job runs, and the peak RSS from `getrusage`) and returns them in its result
as `usage` (the fields of `engine.peaks.PeakUsage`), keyed by the job's footprint (`footprint_key`:
kind, model, preset, batch size, context, dtype). The engine files them (`engine.peaks.PeakBook`)
and admission reserves the measured peak of earlier jobs with the same footprint.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from typing import Any

GIB = 1024**3


def job_dtype(kind: str, on_gpu: bool) -> str:
    """The compute dtype a job runs in: training autocasts to bf16 on CUDA; everything else is fp32."""
    return "bf16" if on_gpu and kind == "train" else "fp32"


def footprint_key(spec: Any, on_gpu: bool) -> str:
    """Jobs with the same key use about the same memory: (kind, model, preset, batch, context, dtype)."""
    p = spec.params or {}
    return "|".join([spec.kind, spec.model or "-", str(p.get("preset") or "tiny"), f"b{p.get('batch_size') or '-'}",
                     f"c{p.get('context') or '-'}", job_dtype(spec.kind, on_gpu)])


def _peak_rss_gb() -> float:
    """This process's peak RSS since start or the last reset (VmHWM), else getrusage's lifetime peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / GIB  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux: KiB


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------
class PeakMeter:
    """Measures this process's peaks while a job runs; `stop()` returns the `usage` record.

    NVML is sampled from a thread every `every` seconds (only on a CUDA device, only when
    nvidia-ml-py answers); torch's own peaks are read at the end, when the task imported torch and
    initialised CUDA. Nothing here imports torch.
    """

    def __init__(self, key: str, device: str = "cpu", every: float = 0.5) -> None:
        self.key = key
        self.device = device
        self.every = every
        self._nvml_peak: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakMeter:
        # A pooled worker runs many jobs in one process: restart the process-lifetime peaks here.
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS
        except OSError:
            pass
        torch = sys.modules.get("torch")
        if torch is not None and self.device.startswith("cuda") and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats(torch.device(self.device))
        if self.device.startswith("cuda"):
            self._thread = threading.Thread(target=self._sample_nvml, name="peak-meter", daemon=True)
            self._thread.start()
        return self

    def _sample_nvml(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver / no library: the figure stays None
            return
        pid = os.getpid()
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            while True:
                for h in handles:
                    try:
                        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                    except Exception:  # noqa: BLE001 - unsupported query on this board
                        continue
                    for p in procs:
                        used = getattr(p, "usedGpuMemory", None)
                        if p.pid == pid and isinstance(used, int) and used < (1 << 60):
                            self._nvml_peak = max(self._nvml_peak or 0.0, used / GIB)
                if self._stop.wait(self.every):
                    break
        finally:
            try:
                pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting NVML down after a failed query: nothing left to report
                pass

    def stop(self) -> dict[str, Any]:
        """The `usage` record (engine.peaks.PeakUsage fields); safe to call more than once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.every + 1)
        alloc = reserved = None
        torch = sys.modules.get("torch")
        if torch is not None and self.device.startswith("cuda") and torch.cuda.is_initialized():
            dev = torch.device(self.device)
            alloc = torch.cuda.max_memory_allocated(dev) / GIB
            reserved = torch.cuda.max_memory_reserved(dev) / GIB
        rss = _peak_rss_gb()
        return {"key": self.key, "device": self.device, "peak_rss_gb": round(rss, 4),
                "peak_torch_allocated_gb": None if alloc is None else round(alloc, 4),
                "peak_torch_reserved_gb": None if reserved is None else round(reserved, 4),
                "peak_nvml_gb": None if self._nvml_peak is None else round(self._nvml_peak, 4)}
