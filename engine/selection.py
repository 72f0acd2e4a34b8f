"""Scoring against naive and choosing on validation: the rules every evaluating job applies.

Why its own module: validate, compare, calibrate and regression all score a forecast, pick naive's
reference variant and rank candidates, and a second copy of any of these would let one job judge
differently from another (`engine.evaluation` re-exports these names, so tasks read `ev.<name>`).

- `score`: every metric through `engine.metrics.evaluate`, as JSON-ready floats (None where undefined).
- `naive_reference`: naive's own variants (persistence, drift, seasonal) are selected on validation
  like any model; the chosen variant is the reference of every DM test, and `naive_decision` lets a
  model replace it only when it is significantly better on validation (one-sided DM,
  `DEFAULT_DM_ALPHA`).
- `select_best` / `rank`: candidates ordered by their *validation* metric only (ties: cheaper, then
  earlier). Test windows are scored after the choice, so no selection can read the test span.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.metrics import finite_or_none

if TYPE_CHECKING:
    from engine.data import Windows
    from engine.evaluation import EvalSetup

#: Lower is better for these; selection minimises them.
MINIMISE: frozenset[str] = frozenset({"mae", "mae_pct", "return_mae", "rmse", "mase", "crps"})
DEFAULT_SELECTION_METRIC = "mae_pct"
#: A model replaces naive only when its one-sided DM p-value on validation is below this.
DEFAULT_DM_ALPHA = 0.05


class EvaluationError(ValueError):
    """Bad evaluation input (unknown metric, empty candidate list, windows too short)."""


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
    return {k: finite_or_none(v) for k, v in out.items()}


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
    p = finite_or_none(validation.get("dm_p_better"))
    label = dm_label(finite_or_none(validation.get("dm_stat")), finite_or_none(validation.get("dm_p_two_sided")))
    if p is None:
        return False, "DM test undefined on validation (too few windows): naive kept"
    if p < alpha:
        return True, f"better than naive on validation (one-sided DM p={p:.2g} < {alpha:g})"
    return False, f"not significantly better than naive on validation ({label}; one-sided p={p:.2g} >= {alpha:g})"


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
