"""Shared evaluation helpers for the validate/compare/calibrate/regression jobs.

Why one module: every job must score every model on *identical* windows, reuse one sample draw for
every aggregation, and select on validation only. Keeping those three rules in one place means
they cannot drift apart between jobs.

- `EvalSetup` / `build_setup`: one symbol's spans and its validation and test windows. Every model
  sees these exact windows; a model that wants a shorter context takes the last `c` rows of the
  same windows (`truncate_context`), so targets and origins never differ between models.
- `SampleBank`: one draw per (windows, draw parameters, seed); smaller `num_samples` are prefixes
  of the largest draw and every aggregation reads the same samples.
- Windows cover their whole span by default: every origin up to `DEFAULT_MAX_WINDOWS` per span,
  beyond that a wider stride spreads the cap over the span (`engine.data.windows.spread_stride`).
  Every result records its window spec (`window_spec`: span, count, stride, rows covered, first and
  last origin), so numbers from different window sets are never ranked together.
- `select_best`: picks a candidate from *validation* metrics only. Test windows are scored only
  after the choice is made (`score_config`), so no selection can read the test span.
- `naive_reference`: naive's own variants (persistence, drift, seasonal) are selected on
  validation like any model; the chosen variant is the reference of every DM test, and
  `naive_decision` lets a model replace it only when it is significantly better on validation
  (one-sided DM, `DEFAULT_DM_ALPHA`).
- `crossfit_calibration`: an affine calibration scored on validation windows it was not fitted on.
- `run_config`: apply a chosen config (context, draw parameters, num_samples, aggregation,
  optional affine calibration) to windows and return samples + point forecast + latency.

All metric values come from `engine.metrics` (no second definitions here).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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

if TYPE_CHECKING:
    from engine.data import Series, Spans, Windows
    from engine.forecasters.base import Forecaster

#: Lower is better for these; selection minimises them.
MINIMISE: frozenset[str] = frozenset({"mae", "mae_pct", "return_mae", "rmse", "mase", "crps"})
DEFAULT_SELECTION_METRIC = "mae_pct"
#: Windows per evaluation span by default: every origin of the span up to this many (a tiny-preset
#: validate/compare job stays under a minute on a CPU, bench/bench_validate.py); longer spans are
#: spread over with a wider stride.
DEFAULT_MAX_WINDOWS = 256
#: A model replaces naive only when its one-sided DM p-value on validation is below this.
DEFAULT_DM_ALPHA = 0.05
#: Keys of a config that are handled here rather than passed to `Forecaster.forecast`.
CONFIG_META_KEYS: frozenset[str] = frozenset({"num_samples", "aggregation", "context", "calibration", "method"})


class EvaluationError(ValueError):
    """Bad evaluation input (unknown metric, empty candidate list, windows too short)."""


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
    """Caches one sample draw per (windows key, draw parameters, seed) for one loaded model.

    Asking for fewer samples than were drawn returns a prefix of the draw (samples are iid, so a
    prefix is a valid smaller draw); asking for more draws again at the larger size. Every
    aggregation reads the same cached samples. `calls` counts real model calls (for the bench).
    """

    def __init__(self, forecaster: Forecaster) -> None:
        self.forecaster = forecaster
        self._draws: dict[tuple[Any, ...], Draw] = {}
        self.calls = 0
        self.forecasts = 0  # windows x calls, i.e. per-window forecasts actually computed

    def draw(
        self, key: str, windows: Windows, num_samples: int, params: Mapping[str, Any] | None = None, seed: int = 0
    ) -> Draw:
        params = dict(params or {})
        k = (key, windows_fingerprint(windows), _freeze(params), seed)
        have = self._draws.get(k)
        if have is None or have.samples.shape[1] < num_samples:
            t0 = time.perf_counter()
            fc = self.forecaster.forecast(windows, num_samples, seed=seed, **params)
            dt = time.perf_counter() - t0
            samples = np.asarray(fc.samples, dtype=np.float64)
            if samples.ndim != 3 or samples.shape[0] != windows.n or samples.shape[2] != windows.horizon:
                raise EvaluationError(
                    f"{getattr(self.forecaster, 'name', '?')} returned samples of shape {samples.shape}, "
                    f"expected [{windows.n}, S, {windows.horizon}]"
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
# naive reference and scoring


def naive_point(windows: Windows) -> np.ndarray:
    """Persistence forecast on exactly these windows (the DM/MASE reference for every model)."""
    from engine.forecasters.naive import Persistence

    fc = Persistence().forecast(windows, 1, seed=0)
    return np.asarray(fc.samples, dtype=np.float64)[:, 0, :]


def score(windows: Windows, samples: np.ndarray, point: np.ndarray, naive: np.ndarray | None) -> dict[str, float | None]:
    """All metrics through `engine.metrics.evaluate`, as plain floats (JSON-ready); None where undefined."""
    from engine.metrics import evaluate

    out = evaluate(windows, samples, point, naive_point=naive)
    return {k: _f(v) for k, v in out.items()}


@dataclass
class NaiveReference:
    """Naive's variant chosen on validation, with its forecasts on both spans (the DM reference)."""

    method: str
    val_point: np.ndarray
    test_point: np.ndarray
    validation: dict[str, float | None]
    test: dict[str, float | None]
    variants: dict[str, float | None]  # method -> validation metric (what the choice saw)


def naive_reference(setup: EvalSetup, metric: str = DEFAULT_SELECTION_METRIC,
                    methods: Sequence[str] | None = None) -> NaiveReference:
    """Select naive's variant on VALIDATION like any model (persistence/drift/seasonal), then score
    the chosen one on test. Every model's DM test is against this variant on the same windows."""
    from engine.forecasters.naive import NAIVE_METHODS

    names = list(methods or NAIVE_METHODS)
    val_points: dict[str, np.ndarray] = {}
    cands = []
    for name in names:
        if name not in NAIVE_METHODS:
            raise EvaluationError(f"unknown naive method {name!r}; choose one of: {', '.join(NAIVE_METHODS)}")
        vp = np.asarray(NAIVE_METHODS[name]().forecast(setup.val, 1, seed=0).samples, dtype=np.float64)[:, 0, :]
        val_points[name] = vp
        cands.append(Candidate(config={"method": name}, validation=score(setup.val, vp[:, None, :], vp, vp)))
    best = select_best(cands, metric).config["method"]
    vp = val_points[best]
    tp = np.asarray(NAIVE_METHODS[best]().forecast(setup.test, 1, seed=0).samples, dtype=np.float64)[:, 0, :]
    return NaiveReference(method=best, val_point=vp, test_point=tp,
                          validation=score(setup.val, vp[:, None, :], vp, vp),
                          test=score(setup.test, tp[:, None, :], tp, tp),
                          variants={c.config["method"]: c.validation.get(metric) for c in cands})


def dm_label(stat: float | None, p_two_sided: float | None) -> str:
    """"better, p=0.012" / "worse, p=3.5e-05" / "n/a": the DM result with its direction."""
    if stat is None or p_two_sided is None or not (math.isfinite(stat) and math.isfinite(p_two_sided)):
        return "n/a"
    side = "better" if stat < 0 else "worse" if stat > 0 else "equal"
    return f"{side}, p={p_two_sided:.2g}"


def naive_decision(validation: Mapping[str, Any], alpha: float = DEFAULT_DM_ALPHA) -> tuple[bool, str]:
    """(replaces naive?, why) from a model's VALIDATION metrics vs the naive reference.

    A model replaces naive only when the one-sided DM test "model better than naive" on validation
    has p < alpha; a lower validation error alone is not enough (a searched model wins by noise)."""
    p = _f(validation.get("dm_p_better"))
    label = dm_label(_f(validation.get("dm_stat")), _f(validation.get("dm_p_two_sided")))
    if p is None:
        return False, "DM test undefined on validation (too few windows): naive kept"
    if p < alpha:
        return True, f"better than naive on validation (one-sided DM p={p:.2g} < {alpha:g})"
    return False, f"not significantly better than naive on validation ({label}; one-sided p={p:.2g} >= {alpha:g})"


def _f(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------
# selection (validation only)


@dataclass
class Candidate:
    """One configuration and its validation metrics. `cost` breaks ties (cheaper wins)."""

    config: dict[str, Any]
    validation: dict[str, float | None]
    cost: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def metric_value(metrics: Mapping[str, Any], metric: str) -> float:
    """The value used for ranking: missing/NaN ranks last; coverage ranks by distance to 80 %."""
    v = metrics.get(metric)
    if v is None:
        return math.inf
    x = float(v)
    if not math.isfinite(x):
        return math.inf
    if metric == "coverage80":
        return abs(x - 0.8)
    if metric in MINIMISE or metric.endswith(("mae", "mae_pct", "crps", "rmse", "mase")):
        return x
    raise EvaluationError(f"cannot select on {metric!r}; use one of: {', '.join(sorted(MINIMISE))}, coverage80")


def select_best(candidates: Iterable[Candidate], metric: str = DEFAULT_SELECTION_METRIC) -> Candidate:
    """The candidate with the best *validation* metric; ties go to the cheaper, then earlier one.

    Takes only validation metrics by construction: callers score test windows after this returns.
    """
    cands = list(candidates)
    metric_value({metric: 1.0}, metric)  # unknown metric -> error even for one candidate
    if not cands:
        raise EvaluationError("no candidates to select from")
    ranked = sorted(enumerate(cands), key=lambda ic: (metric_value(ic[1].validation, metric), ic[1].cost, ic[0]))
    return ranked[0][1]


def rank(candidates: Iterable[Candidate], metric: str = DEFAULT_SELECTION_METRIC) -> list[Candidate]:
    cands = list(candidates)
    order = sorted(range(len(cands)), key=lambda i: (metric_value(cands[i].validation, metric), cands[i].cost, i))
    return [cands[i] for i in order]


def improvement_pct(value: float | None, reference: float | None) -> float | None:
    """How much lower `value` is than `reference`, in % of the reference (positive = better)."""
    if value is None or reference is None or not math.isfinite(reference) or reference == 0:
        return None
    return (reference - value) / abs(reference) * 100.0


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
