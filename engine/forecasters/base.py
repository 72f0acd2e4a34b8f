"""The one interface every model (naive baselines included) implements.

Forecasts are sample paths in price space, shaped `[windows, num_samples, horizon]`; point
forecasts are an aggregation of those samples, so one draw serves every aggregation.
Quantile models also return their quantiles and sample from them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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


@dataclass
class DrawGroup:
    """One draw setting of a validation search: its draw parameters, context, the sample sizes and the
    aggregations scored on each draw (one model call per size, or one for the sizes whose draws
    nest: `Forecaster.draw_group`)."""

    params: dict[str, Any]
    context: int | None
    sample_sizes: list[int]
    aggregations: list[str]
    method: str | None = None  # naive only
    extra: dict[str, Any] = field(default_factory=dict)


def grid_values(overrides: Mapping[str, Any], key: str, default: Sequence[Any]) -> list[Any]:
    """A search-space axis: the job's override for `key` (one value or a list), else `default`."""
    v = overrides.get(key)
    if v is None:
        return list(default)
    return list(v) if isinstance(v, list | tuple) else [v]


class Forecaster(ABC):
    """A loaded model ready to forecast (and, for foundation models, to fine-tune).

    The class also declares what is known about the model before any weights are loaded (the
    planner, the tasks and the console read these from the class, torch-free): its contexts, patch
    sizes, window limit, pretrained weights, default inference config and validation search space.
    Adding a model is one adapter module with these declarations plus its line in
    `engine.models.ADAPTERS` (docs/ADDING_A_MODEL.md).
    """

    name: ClassVar[str]
    #: Context and horizon lengths are aligned to this (1 for models without patches).
    patch_size: ClassVar[int] = 1
    #: Patch length per preset, known before loading (the planner aligns context down, horizon up).
    patch_sizes: ClassVar[dict[str, int]] = {"tiny": 1, "pretrained": 1}
    #: Context rows an evaluation uses when the job sets none, per preset.
    preset_contexts: ClassVar[dict[str, int]] = {"tiny": 128, "pretrained": 512}
    #: Longest context + horizon the model was trained with (None: no limit).
    max_window: ClassVar[int | None] = None
    #: Hub ids of the pretrained weights (the first is the model's own).
    default_sources: ClassVar[tuple[str, ...]] = ()
    #: Whether `engine.tasks.train` can fine-tune it.
    trainable: ClassVar[bool] = False
    #: Training losses it supports (engine.task_params.LOSSES); `native` is its own objective.
    supported_losses: ClassVar[tuple[str, ...]] = ("native",)
    #: Whether its draws nest: with the same windows, draw parameters and seed, a draw of n samples
    #: equals the first n samples of any larger draw. Only then may `engine.evaluation.SampleBank`
    #: answer a smaller `num_samples` with a prefix of a larger draw; otherwise a validation score
    #: made on a prefix is not what compare, `forecast` or a rerun of the promoted config draw.
    #: False unless the adapter's sampling guarantees it (tests/test_forecasters_models.py checks it).
    nested_draws: ClassVar[bool] = False

    def draw_group(self, num_samples: int, params: Mapping[str, Any]) -> int | None:
        """Draws whose sizes share a group nest (with the same windows, draw parameters and seed, the
        smaller is the first samples of the larger). None: every size is in one group (`nested_draws`);
        else each size is its own. A model whose draws nest only from some size on overrides this."""
        return None if self.nested_draws else int(num_samples)

    @classmethod
    def default_config(cls, preset: str = "tiny") -> dict[str, Any]:
        """The inference config it runs with before validation picked one (tables say 'default')."""
        raise NotImplementedError(f"{cls.__name__} declares no default config")

    @classmethod
    def search_space(cls, *, context: int, preset: str = "tiny", full: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DrawGroup]:
        """The validation grid (`full` = the large one); `overrides` replace axes (grid_values)."""
        raise NotImplementedError(f"{cls.__name__} declares no validation search space")

    @classmethod
    def weight_ids(cls, source: str | None = None, tokenizer: str | None = None) -> list[str]:
        """The hub ids or folders a pretrained load reads (checked before the model package is imported)."""
        return [source or cls.default_sources[0]] if (source or cls.default_sources) else []

    @abstractmethod
    def forecast(self, windows: Windows, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        """Samples for every window; each window's forecast sees only its own context."""

    def save_adapter(self, path: Path) -> None:  # pragma: no cover - models without adapters
        raise NotImplementedError(f"{self.name} has no adapter to save")

    def load_adapter(self, path: Path) -> None:  # pragma: no cover
        raise NotImplementedError(f"{self.name} has no adapter to load")
