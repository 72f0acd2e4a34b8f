"""Ensembles: a trimmed mean over one model's samples, and top-k model averages.

Why they live apart from compare: the top-k choice must be made on validation scores and then
applied unchanged to test forecasts, which is easy to get wrong inline. `top_k_members` sees only
validation scores; `combine` only forecasts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from engine.forecasters.base import aggregate


def trimmed_mean(samples: np.ndarray, trim_pct: int = 10) -> np.ndarray:
    """Point forecast `[W, H]`: drop `trim_pct`% of samples at each tail, average the rest."""
    return aggregate(samples, f"trimmed_mean_{int(trim_pct)}")


def top_k_members(val_scores: Mapping[str, float | None], k: int) -> list[str]:
    """The k models with the lowest validation score (missing/NaN last; ties by name)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    def key(name: str) -> tuple[float, str]:
        v = val_scores[name]
        x = math.inf if v is None or not math.isfinite(float(v)) else float(v)
        return (x, name)

    usable = [m for m in val_scores if val_scores[m] is not None and math.isfinite(float(val_scores[m]))]  # type: ignore[arg-type]
    return sorted(usable, key=key)[:k]


def combine(
    points: Mapping[str, np.ndarray], samples: Mapping[str, np.ndarray], members: Sequence[str],
    max_samples_per_member: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-weight average of members' points; samples are the members' pooled sample paths.

    Pooling (a mixture) keeps the ensemble's predictive distribution usable for CRPS/coverage;
    each member contributes the same number of paths so no model dominates by sample count.
    """
    if not members:
        raise ValueError("an ensemble needs at least one member")
    missing = [m for m in members if m not in points or m not in samples]
    if missing:
        raise ValueError(f"no forecasts for ensemble member(s): {', '.join(missing)}")
    point = np.mean([np.asarray(points[m], dtype=np.float64) for m in members], axis=0)
    n = min(max_samples_per_member, *(samples[m].shape[1] for m in members))
    pooled = np.concatenate([np.asarray(samples[m], dtype=np.float64)[:, :n, :] for m in members], axis=1)
    return point, pooled
