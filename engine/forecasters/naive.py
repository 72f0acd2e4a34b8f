"""Naive baselines: the yardsticks every model is measured against on the same windows.

They are deterministic, so `num_samples` identical copies are returned (shape `[W, S, H]`) only to
fit the shared interface (so their draws nest: `Deterministic`); CRPS of such a forecast equals its MAE. No torch here: the baseline task
and the console run them without loading any model package.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from engine.forecasters.base import DrawGroup, Forecast, Forecaster, grid_values

if TYPE_CHECKING:
    from engine.data import Windows

#: Seasonal period in rows: a business week for exchange-traded symbols, a week for crypto.
BUSINESS_WEEK = 5
CALENDAR_WEEK = 7


def _context_close(windows: Windows) -> np.ndarray:
    cc = np.asarray(windows.context, dtype=np.float64)[:, :, 3]
    if cc.ndim != 2 or cc.shape[1] < 1:
        raise ValueError(f"windows need at least one context row, got context shape {windows.context.shape}")
    return cc


def _as_forecast(point: np.ndarray, num_samples: int, started: float, **info: Any) -> Forecast:
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    samples = np.repeat(point[:, None, :], num_samples, axis=1)
    return Forecast(samples=samples, latency_s=time.perf_counter() - started, info=info)


class Deterministic(Forecaster):
    """A baseline without randomness: every sample is the point forecast, so draws nest."""

    nested_draws: ClassVar[bool] = True


class Persistence(Deterministic):
    """Every future step equals the last observed close (the random-walk forecast)."""

    name: ClassVar[str] = "naive_persistence"

    def point(self, windows: Windows) -> np.ndarray:
        """Point forecast `[W, H]`."""
        cc = _context_close(windows)
        return np.repeat(cc[:, -1:], windows.horizon, axis=1)

    def forecast(self, windows: Windows, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        t0 = time.perf_counter()
        return _as_forecast(self.point(windows), num_samples, t0)


class Drift(Deterministic):
    """Extend the straight line through the first and last context closes (random walk + drift)."""

    name: ClassVar[str] = "naive_drift"

    def point(self, windows: Windows) -> np.ndarray:
        cc = _context_close(windows)
        n_ctx = cc.shape[1]
        slope = (cc[:, -1] - cc[:, 0]) / (n_ctx - 1) if n_ctx > 1 else np.zeros(cc.shape[0])
        steps = np.arange(1, windows.horizon + 1, dtype=np.float64)
        return cc[:, -1:] + slope[:, None] * steps[None, :]

    def forecast(self, windows: Windows, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        t0 = time.perf_counter()
        return _as_forecast(self.point(windows), num_samples, t0)


def infer_season(windows: Windows) -> int:
    """7 when the context has weekend bars (crypto trades every day), else 5 (business days)."""
    times = np.asarray(getattr(windows, "context_time", np.empty(0)))
    if times.size and np.issubdtype(times.dtype, np.datetime64):
        # 1970-01-01 was a Thursday: day index 2 and 3 (mod 7) are Saturday and Sunday.
        days = times.astype("datetime64[D]").astype(np.int64) % 7
        if np.any((days == 2) | (days == 3)):
            return CALENDAR_WEEK
    return BUSINESS_WEEK


class SeasonalNaive(Deterministic):
    """Repeat the last season of closes: ŷ[t+h] = y[t+h − season·ceil(h/season)].

    `season=None` infers 5 or 7 from the context timestamps (weekend bars → 7).
    """

    name: ClassVar[str] = "naive_seasonal"

    def __init__(self, season: int | None = None) -> None:
        if season is not None and (not isinstance(season, int) or isinstance(season, bool) or season < 1):
            raise ValueError(f"season must be a positive integer, got {season!r}")
        self.season = season

    def point(self, windows: Windows) -> np.ndarray:
        cc = _context_close(windows)
        season = self.season or infer_season(windows)
        if cc.shape[1] < season:
            raise ValueError(f"seasonal naive needs at least {season} context rows, got {cc.shape[1]}")
        idx = cc.shape[1] - season + (np.arange(windows.horizon) % season)
        return cc[:, idx]

    def forecast(self, windows: Windows, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        t0 = time.perf_counter()
        season = self.season or infer_season(windows)
        return _as_forecast(SeasonalNaive(season).point(windows), num_samples, t0, season=season)


#: Method key → class. Model names in baseline rows are the classes' `name`s.
NAIVE_METHODS: dict[str, type[Forecaster]] = {
    "persistence": Persistence,
    "drift": Drift,
    "seasonal": SeasonalNaive,
}


class NaiveForecaster(Deterministic):
    """The "naive" model of the registry: one of NAIVE_METHODS per call (`method=`, default persistence).

    Its validation search is over the methods themselves; evaluation draws each method's forecast
    from its own class (engine.evaluation.ModelCache), so this class mainly declares the knowledge.
    """

    name: ClassVar[str] = "naive"

    def __init__(self, preset: str = "tiny", device: str = "cpu", **_: Any) -> None:
        self.preset = preset

    @classmethod
    def default_config(cls, preset: str = "tiny") -> dict[str, Any]:
        return {"method": "persistence", "num_samples": 1, "aggregation": "mean"}

    @classmethod
    def search_space(cls, *, context: int, preset: str = "tiny", full: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DrawGroup]:
        methods = grid_values(dict(overrides or {}), "methods", list(NAIVE_METHODS))
        return [DrawGroup({}, None, [1], ["mean"], method=m) for m in methods]

    def forecast(self, windows: Windows, num_samples: int = 1, *, seed: int = 0, method: str = "persistence",
                 **params: Any) -> Forecast:
        if method not in NAIVE_METHODS:
            raise ValueError(f"unknown naive method {method!r}; choose one of: {', '.join(NAIVE_METHODS)}")
        return NAIVE_METHODS[method]().forecast(windows, num_samples, seed=seed)
