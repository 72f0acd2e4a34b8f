"""Measured memory peaks on the engine side: the record, the book, and what admission reserves.

Workers report their peaks as `usage` in their result (engine.vram.PeakMeter); the engine validates
them as a `PeakUsage`, files them in a `PeakBook` under the job's footprint (engine.vram.footprint_key)
kept in `<workspace>/peaks.json`, and admission (engine.scheduler) reserves the measured peak (plus
`MARGIN`) of earlier jobs with the same footprint instead of the submit-time guess. On CPU the peak
RSS plays the same role against free host RAM. Before anything was measured, `estimate_train_vram_gb`
is the first guess for a real-size train job.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.vram import GIB, footprint_key

#: Headroom added to a measured peak: allocator fragmentation and a slightly longer batch next time.
MARGIN = 1.10
#: A CUDA context costs this much outside torch's allocator; added when NVML gave no per-process figure.
CUDA_CONTEXT_GB = 0.5
#: How many recent measurements per footprint are kept (the largest is used).
KEEP = 5
PEAKS_FILE = "peaks.json"


class PeakUsage(BaseModel):
    """Peaks of one job, as the worker reports them in its result (`usage`)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    device: str = "cpu"
    peak_rss_gb: float | None = None
    peak_torch_allocated_gb: float | None = None
    peak_torch_reserved_gb: float | None = None
    peak_nvml_gb: float | None = None  # this process, from NVML, max over the job's samples

    @property
    def vram_gb(self) -> float | None:
        """Device memory the job held at its peak: NVML's figure, else torch's reserved + a context."""
        if self.peak_nvml_gb is not None:
            return max(self.peak_nvml_gb, self.peak_torch_reserved_gb or 0.0)
        if self.peak_torch_reserved_gb is not None:
            return self.peak_torch_reserved_gb + CUDA_CONTEXT_GB
        return None

# ---------------------------------------------------------------------------------------------
# Engine side
# ---------------------------------------------------------------------------------------------
class Need(BaseModel):
    """What admission reserves for a job, and where the number came from (shown by the console)."""

    vram_gb: float = 0.0
    rss_gb: float | None = None
    estimate_gb: float = 0.0  # the job's own resources.vram_gb
    measured_gb: float | None = None  # largest recent measured peak of its footprint (no margin)
    source: str = "estimate"  # "estimate" | "measured"


class PeakBook:
    """Recent measured peaks per footprint; persisted to `path` (JSON) when one is given.

    Written only by the engine (one writer); a missing or unreadable file starts an empty book.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._peaks: dict[str, list[dict[str, float | None]]] = {}
        if self.path is not None and self.path.is_file():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self._peaks = {str(k): [dict(x) for x in v][-KEEP:] for k, v in raw.get("peaks", {}).items()}
            except (OSError, ValueError, TypeError, AttributeError):
                self._peaks = {}

    def record(self, usage: PeakUsage | dict[str, Any] | None) -> PeakUsage | None:
        """File one job's peaks (a result's `usage`); ignores a missing or malformed record."""
        if usage is None:
            return None
        try:
            u = usage if isinstance(usage, PeakUsage) else PeakUsage.model_validate(usage)
        except ValidationError:
            return None
        with self._lock:
            rows = self._peaks.setdefault(u.key, [])
            rows.append({"vram_gb": u.vram_gb, "rss_gb": u.peak_rss_gb, "t": time.time()})
            del rows[:-KEEP]
        return u

    def save(self) -> None:
        if self.path is None:
            return
        from store.atomic import atomic_write_json

        with self._lock:
            data = {"format": 1, "peaks": {k: list(v) for k, v in self._peaks.items()}}
        atomic_write_json(self.path, data, fsync=False, indent=1)

    def measured(self, key: str) -> tuple[float | None, float | None]:
        """(largest recent VRAM peak, largest recent RSS peak) of a footprint, None when never measured."""
        with self._lock:
            rows = list(self._peaks.get(key, []))
        vram = [v for r in rows if (v := r.get("vram_gb")) is not None]
        rss = [v for r in rows if (v := r.get("rss_gb")) is not None]
        return (max(vram) if vram else None), (max(rss) if rss else None)

    def need(self, spec: Any, on_gpu: bool) -> Need:
        """What to reserve for `spec`: the measured peak × MARGIN when known, else its estimate."""
        est = float(spec.resources.vram_gb)
        vram, rss = self.measured(footprint_key(spec, on_gpu))
        rss_need = None if rss is None else round(rss * MARGIN, 3)
        if on_gpu and vram is not None:
            return Need(vram_gb=round(vram * MARGIN, 3), rss_gb=rss_need, estimate_gb=est, measured_gb=vram,
                        source="measured")
        return Need(vram_gb=est, rss_gb=rss_need, estimate_gb=est, measured_gb=vram, source="estimate")


# ---------------------------------------------------------------------------------------------
# The estimate used before anything was measured
# ---------------------------------------------------------------------------------------------
#: Real-size architectures (engine.forecasters.realsize): parameters, width, layers, steps per token.
ARCH: dict[str, tuple[float, int, int, int]] = {
    "toto": (151.3e6, 768, 12, 64), "chronos2": (119.5e6, 768, 12, 16), "kronos": (28.7e6, 512, 8, 1),
}


def estimate_train_vram_gb(model: str, batch: int, context: int, horizon: int, dtype: str = "bf16",
                           finetune: str = "lora") -> float:
    """A first guess of a real-size train job's device memory, before any job of its kind was measured.

    fp32 weights (+ a bf16 copy under autocast), gradients and Adam moments only for full fine-tuning,
    and activations of ~34 values per token, layer and channel (Megatron's count for a transformer
    layer), at 2 bytes in bf16 and 4 in fp32, plus a CUDA context. Admission replaces it with the
    measurement as soon as one job of the footprint has finished.
    """
    if model not in ARCH:
        raise ValueError(f"no architecture figures for {model!r}; choose one of: {', '.join(ARCH)}")
    params, width, layers, per_token = ARCH[model]
    bytes_per = 2 if dtype == "bf16" else 4
    weights = params * (4 + (2 if dtype == "bf16" else 0)) + (params * 12 if finetune == "full" else 0)
    tokens = batch * -(-(context + horizon) // per_token)
    acts = tokens * layers * width * 34 * bytes_per
    return round((weights + acts) / GIB + CUDA_CONTEXT_GB, 2)
