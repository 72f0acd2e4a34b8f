"""The one interface every model (naive baselines included) implements.

Forecasts are sample paths in price space, shaped `[windows, num_samples, horizon]`; point
forecasts are an aggregation of those samples, so one draw serves every aggregation.
Quantile models also return their quantiles and sample from them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from engine.data import Windows

AGGREGATIONS: tuple[str, ...] = (
    "mean", "median", "trimmed_mean_10", "trimmed_mean_20", "q0.4", "q0.5", "q0.6",
)


@dataclass
class Forecast:
    samples: np.ndarray  # float64 [W, S, H], price scale
    quantiles: dict[float, np.ndarray] | None = None  # level -> [W, H], for quantile models
    latency_s: float = 0.0  # wall time of the whole call
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def per_window_latency_s(self) -> float:
        return self.latency_s / max(1, self.samples.shape[0])


def window_seed(seed: int, origin: int) -> int:
    """The sampling seed of one window: from (seed, origin) only, never from its batch position.

    Why: with one RNG per batch, a window's samples changed when other windows joined the batch, so
    the same seed and the same window gave different forecasts in validate and compare."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(origin) & 0xFFFFFFFF]).generate_state(1)[0])


def window_rngs(seed: int, origins: Any) -> list[np.random.Generator]:
    """One numpy Generator per window (`window_seed`), for models that draw their own noise."""
    return [np.random.default_rng(window_seed(seed, o)) for o in np.asarray(origins).reshape(-1)]


def aggregate(samples: np.ndarray, how: str = "median") -> np.ndarray:
    """Point forecast `[W, H]` from samples `[W, S, H]`.

    mean, median, trimmed_mean_P (drop P% at each tail, then mean), qX (the X quantile).
    """
    if samples.ndim != 3:
        raise ValueError(f"samples must be [windows, samples, horizon], got shape {samples.shape}")
    if how == "mean":
        return samples.mean(axis=1)
    if how == "median":
        return np.median(samples, axis=1)
    if how.startswith("trimmed_mean_"):
        pct = int(how.rsplit("_", 1)[1])
        if not 0 <= pct < 50:
            raise ValueError(f"trim percentage must be in [0, 50), got {pct}")
        s = np.sort(samples, axis=1)
        k = int(np.floor(s.shape[1] * pct / 100.0))
        return s[:, k : s.shape[1] - k, :].mean(axis=1)
    if how.startswith("q"):
        q = float(how[1:])
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        return np.quantile(samples, q, axis=1)
    raise ValueError(f"unknown aggregation {how!r}; choose one of: {', '.join(AGGREGATIONS)}")


class Forecaster(ABC):
    """A loaded model ready to forecast (and, for foundation models, to fine-tune)."""

    name: ClassVar[str]
    #: Context and horizon lengths are aligned to this (1 for models without patches).
    patch_size: ClassVar[int] = 1

    @abstractmethod
    def forecast(self, windows: Windows, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        """Samples for every window; each window's forecast sees only its own context."""

    def save_adapter(self, path: Path) -> None:  # pragma: no cover - models without adapters
        raise NotImplementedError(f"{self.name} has no adapter to save")

    def load_adapter(self, path: Path) -> None:  # pragma: no cover
        raise NotImplementedError(f"{self.name} has no adapter to load")
