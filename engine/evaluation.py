"""Shared evaluation helpers for the validate/compare/calibrate/regression jobs: windows and draws.

Why one module: every job must score every model on *identical* windows and reuse one sample draw
for every aggregation. Keeping those rules in one place means they cannot drift apart between jobs.
The rules for scoring and choosing live beside it (`engine.selection`: naive reference, DM decision,
validation-only selection), calibration in `engine.calibration`, read-only store helpers in
`engine.eval_runs`; this module re-exports their names, so a task reads everything as `ev.<name>`.

- `EvalSetup` / `build_setup`: one symbol's spans and its validation and test windows. Every model
  sees these exact windows; a model that wants a shorter context takes the last `c` rows of the
  same windows (`truncate_context`), so targets and origins never differ between models.
- `SampleBank`: one draw per (windows, draw parameters, seed, num_samples); a smaller `num_samples`
  is a prefix of a larger draw only where the model's draws nest (`Forecaster.draw_group`), so a
  config's score is always that of a fresh draw of its own size. Every aggregation reads the same samples.
- Windows cover their whole span by default: every origin up to `DEFAULT_MAX_WINDOWS` per span,
  beyond that a wider stride spreads the cap over the span (`engine.data.windows.spread_stride`).
  Every result records its window spec (`window_spec`: span, count, stride, rows covered, first and
  last origin), so numbers from different window sets are never ranked together.
- `run_config`: apply a chosen config (context, draw parameters, num_samples, aggregation,
  optional affine calibration) to windows and return samples + point forecast + latency.
- `ModelCache`: one model load per (model, preset, adapter) per job.

All metric values come from `engine.metrics` (no second definitions here).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.calibration import (  # noqa: F401 - re-exported: one definition, used as ev.<name>
    CROSSFIT_FOLDS,
    apply_calibration,
    calibrate_samples,
    crossfit_calibration,
    fit_affine,
)
from engine.eval_runs import (  # noqa: F401 - re-exported
    latest_checkpoint_run,
    open_store_readonly,
    pick_horizon,
    run_horizon,
    run_id_of,
)
from engine.selection import (  # noqa: F401 - re-exported
    DEFAULT_DM_ALPHA,
    DEFAULT_SELECTION_METRIC,
    MINIMISE,
    Candidate,
    EvaluationError,
    NaiveReference,
    dm_label,
    improvement_pct,
    metric_value,
    naive_decision,
    naive_point,
    naive_reference,
    rank,
    score,
    select_best,
)

if TYPE_CHECKING:
    from engine.data import Series, Spans, Windows
    from engine.forecasters.base import Forecaster
    from engine.task_params import EvalParams

#: Windows per evaluation span by default: every origin of the span up to this many (a tiny-preset
#: validate/compare job stays under a minute on a CPU, bench/bench_validate.py); longer spans are
#: spread over with a wider stride.
DEFAULT_MAX_WINDOWS = 256
#: Keys of a config that are handled here rather than passed to `Forecaster.forecast`.
CONFIG_META_KEYS: frozenset[str] = frozenset({"num_samples", "aggregation", "context", "calibration", "method"})


# ----------------------------------------------------------------------------------------------
# windows


@dataclass(frozen=True)
class EvalSetup:
    """One symbol's spans and the validation/test windows every model is scored on."""

    symbol: str
    horizon: int
    context: int
    spans: Spans
    val: Windows
    test: Windows

    def windows_info(self) -> dict[str, Any]:
        """What a pick records about where it was chosen and reported (JSON-ready)."""
        return {
            "horizon": self.horizon,
            "context": self.context,
            "spans": self.spans.to_dict(),
            "val_windows": window_spec(self.val, self.spans),
            "test_windows": window_spec(self.test, self.spans),
        }


def window_spec(windows: Windows, spans: Spans | None = None) -> dict[str, Any]:
    """{span, count, stride, rows_covered, first_origin, last_origin} of a set of windows
    (`store.records.WindowSpec`, the one definition), plus `span_rows` when the spans are known."""
    from store.records import WindowSpec

    doc = WindowSpec.from_origins(windows.span, windows.origins, windows.horizon).to_doc()
    if spans is not None:
        doc["span_rows"] = spans.rows(windows.span)
    return doc


def build_setup(
    symbol: str,
    *,
    horizon: int,
    context: int,
    data_dirs: Sequence[Path] | None = None,
    series: Series | None = None,
    val_windows: int | None = None,
    test_windows: int | None = None,
    stride: int | None = None,
    val_rows: int | None = None,
    test_rows: int | None = None,
    dayfirst: bool | None = None,
) -> EvalSetup:
    """Load the symbol (unless `series` is given) and build its validation and test windows.

    `val_windows`/`test_windows` cap the windows per span (default `DEFAULT_MAX_WINDOWS`); `stride`
    is the smallest step between origins (default 1). A cap widens the stride so the windows still
    cover the whole span. `dayfirst` is the loader's date-order override.
    """
    from engine.data import load_symbol, make_windows, split_spans

    if horizon <= 0 or context <= 0:
        raise EvaluationError(f"horizon and context must be positive, got horizon={horizon} context={context}")
    for name, v in (("val_windows", val_windows), ("test_windows", test_windows), ("stride", stride)):
        if v is not None and int(v) < 1:
            raise EvaluationError(f"{name} must be >= 1, got {v}")
    s = series if series is not None else load_symbol(symbol, data_dirs, dayfirst=dayfirst)
    spans = split_spans(s.n_rows, horizon, val_rows=val_rows, test_rows=test_rows)
    step = int(stride or 1)
    val = make_windows(s, spans, "val", context, horizon, stride=step, max_windows=int(val_windows or DEFAULT_MAX_WINDOWS))
    test = make_windows(s, spans, "test", context, horizon, stride=step,
                        max_windows=int(test_windows or DEFAULT_MAX_WINDOWS))
    return EvalSetup(symbol=s.symbol, horizon=horizon, context=context, spans=spans, val=val, test=test)


def setup_from_params(symbol: str, params: Mapping[str, Any], *, horizon: int, context: int,
                      data_dirs: Sequence[Path] | None = None) -> EvalSetup:
    """`build_setup` with the window/span/date settings every evaluating job kind accepts."""
    return build_setup(
        symbol, horizon=horizon, context=context, data_dirs=data_dirs,
        val_windows=params.get("val_windows"), test_windows=params.get("test_windows"),
        stride=params.get("stride"), val_rows=params.get("val_rows"), test_rows=params.get("test_rows"),
        dayfirst=params.get("dayfirst"),
    )


def job_models(params: EvalParams, device: str) -> ModelCache:
    """The job's model cache: its preset, its device and the pretrained weights it names."""
    return ModelCache(preset=params.preset, device=device,
                      weights={"source": params.source, "tokenizer": params.tokenizer})


def truncate_context(windows: Windows, context: int | None) -> Windows:
    """The same windows with only the last `context` rows of each context (same origins/targets)."""
    if context is None or context >= windows.context_len:
        return windows
    if context <= 0:
        raise EvaluationError(f"context must be positive, got {context}")
    return dataclasses.replace(
        windows,
        context_len=int(context),
        context=windows.context[:, -context:, :],
        context_time=windows.context_time[:, -context:],
    )


# ----------------------------------------------------------------------------------------------
# sample draws


def _freeze(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def windows_fingerprint(windows: Windows) -> tuple[Any, ...]:
    """Identity of a set of windows by content (symbol, span, origins, context values, horizon).

    A cache keyed by a label alone would hand one symbol's draw to the next symbol in the same job.
    """
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(windows.origins).tobytes())
    h.update(np.ascontiguousarray(windows.context).tobytes())
    return (windows.symbol, windows.span, int(windows.horizon), int(windows.context_len), h.hexdigest())


@dataclass
class Draw:
    samples: np.ndarray  # [W, S, H]
    latency_s: float  # wall time of the draw
    quantiles: dict[float, np.ndarray] | None = None


class SampleBank:
    """Caches sample draws per (windows key, draw parameters, seed) for one loaded model.

    A smaller `num_samples` is answered with a prefix of a larger cached draw only when the model's
    draws of the two sizes nest (`Forecaster.draw_group`, from `nested_draws` unless the model says
    more: a draw of n samples is the first n of the larger draw with the same seed), so the prefix is
    exactly what a fresh draw of n gives. Otherwise every
    `num_samples` is its own draw: a prefix would be a valid smaller sample, but not the one compare,
    `forecast` or a rerun of the promoted config draws, and which one a config got would depend on
    the order it was asked in. Every aggregation reads the same cached samples (exact either way).
    `calls` counts real model calls (for the bench).
    """

    def __init__(self, forecaster: Forecaster) -> None:
        self.forecaster = forecaster
        self.nested = bool(getattr(forecaster, "nested_draws", False))
        self._group = getattr(forecaster, "draw_group", None)  # absent on plain test doubles: `nested` decides
        self._draws: dict[tuple[Any, ...], Draw] = {}
        self.calls = 0
        self.forecasts = 0  # windows x calls, i.e. per-window forecasts actually computed

    def draw(
        self, key: str, windows: Windows, num_samples: int, params: Mapping[str, Any] | None = None, seed: int = 0
    ) -> Draw:
        params = dict(params or {})
        group = self._group(num_samples, params) if self._group is not None else (
            None if self.nested else int(num_samples))
        k = (key, windows_fingerprint(windows), _freeze(params), seed, group)
        have = self._draws.get(k)
        if have is None or have.samples.shape[1] < num_samples:
            t0 = time.perf_counter()
            fc = self.forecaster.forecast(windows, num_samples, seed=seed, **params)
            dt = time.perf_counter() - t0
            samples = np.asarray(fc.samples, dtype=np.float64)
            if samples.shape != (windows.n, num_samples, windows.horizon):
                raise EvaluationError(
                    f"{getattr(self.forecaster, 'name', '?')} returned samples of shape {samples.shape}, "
                    f"expected [{windows.n}, {num_samples}, {windows.horizon}]"
                )
            have = Draw(samples=samples, latency_s=fc.latency_s or dt, quantiles=fc.quantiles)
            self._draws[k] = have
            self.calls += 1
            self.forecasts += windows.n
        if have.samples.shape[1] > num_samples:
            return Draw(samples=have.samples[:, :num_samples, :], latency_s=have.latency_s, quantiles=have.quantiles)
        return have


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta keys handled here, draw parameters passed to the model)."""
    meta = {k: v for k, v in config.items() if k in CONFIG_META_KEYS}
    draw = {k: v for k, v in config.items() if k not in CONFIG_META_KEYS}
    return meta, draw


@dataclass
class ConfigOutput:
    samples: np.ndarray  # [W, S, H] after calibration
    point: np.ndarray  # [W, H]
    latency_per_forecast_s: float


def run_config(
    bank: SampleBank, key: str, windows: Windows, config: Mapping[str, Any], *, seed: int = 0,
    crossfit: bool = False,
) -> ConfigOutput:
    """Apply a config to windows: context, draw parameters, num_samples, aggregation, calibration.

    `crossfit=True` (validation windows): a config's calibration is replaced by the cross-fitted one
    (`crossfit_calibration`), because the stored calibration was fitted on these very windows."""
    from engine.forecasters.base import aggregate

    meta, draw_params = split_config(config)
    w = truncate_context(windows, meta.get("context"))
    n = int(meta.get("num_samples") or 1)
    d = bank.draw(key, w, n, draw_params, seed)
    samples = d.samples
    how = str(meta.get("aggregation") or ("mean" if samples.shape[1] == 1 else "median"))
    point = aggregate(samples, how)
    cal = meta.get("calibration")
    if cal and crossfit:
        point, samples = crossfit_calibration(point, samples, windows)
    elif cal:
        point = apply_calibration(point, windows.last_close, cal)
        samples = calibrate_samples(samples, windows.last_close, cal)
    return ConfigOutput(samples=samples, point=point, latency_per_forecast_s=d.latency_s / max(1, windows.n))


# ----------------------------------------------------------------------------------------------
# models and the store (read-only)


class ModelCache:
    """One model load per (model, preset, adapter) per job: validation grids never reload weights."""

    def __init__(self, *, preset: str = "tiny", device: str = "cpu", loader: Callable[..., Forecaster] | None = None,
                 weights: Mapping[str, Any] | None = None):
        self.preset = preset
        self.device = device
        self._loader = loader
        #: `source`/`tokenizer` of the pretrained weights (job params); an adapter's own record fills gaps.
        self.weights = {k: v for k, v in (weights or {}).items() if k in ("source", "tokenizer") and v}
        self._models: dict[tuple[str, str, str | None, str | None], SampleBank] = {}
        self.loads = 0

    def bank(self, model: str, *, adapter: str | Path | None = None, method: str | None = None) -> SampleBank:
        key = (model, self.preset, str(adapter) if adapter else None, method)
        if key not in self._models:
            self._models[key] = SampleBank(self._load(model, adapter, method))
            self.loads += 1
        return self._models[key]

    def _load(self, model: str, adapter: str | Path | None, method: str | None) -> Forecaster:
        if model == "naive":
            from engine.forecasters.naive import NAIVE_METHODS

            name = method or "persistence"
            if name not in NAIVE_METHODS:
                raise EvaluationError(f"unknown naive method {name!r}; choose one of: {', '.join(NAIVE_METHODS)}")
            return NAIVE_METHODS[name]()
        if self._loader is not None:
            return self._loader(model, self.preset, adapter=Path(adapter) if adapter else None, device=self.device)
        from engine.forecasters.registry import load_forecaster

        kw = self.weights if self.preset == "pretrained" else {}
        return load_forecaster(model, self.preset, adapter=Path(adapter) if adapter else None, device=self.device, **kw)


def config_key(config: Mapping[str, Any]) -> str:
    """A stable, readable label for a config (for tables and logs)."""
    parts = []
    for k in sorted(config):
        v = config[k]
        if isinstance(v, float):
            v = f"{v:g}"
        elif isinstance(v, dict):
            v = "{" + ",".join(f"{a}={b:.4g}" if isinstance(b, float) else f"{a}={b}" for a, b in sorted(v.items())) + "}"
        parts.append(f"{k}={v}")
    return " ".join(parts)
