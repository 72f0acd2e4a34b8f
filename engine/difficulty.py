"""Difficulty tiers: how hard a symbol is, judged by naive persistence MAE% at one horizon.

The tier drives training plans (loss, LoRA rank, epochs), so its thresholds live here and only
here. Tiers at h=64: easy < 8, medium 8–15, hard > 15, and "extreme" for symbols like UNIUSD
(~70%) where even "hard" settings are a different regime.
"""

from __future__ import annotations

import math

#: Horizon (rows) at which the tier is measured.
DEFAULT_TIER_HORIZON = 64

#: (upper bound exclusive, tier) in increasing order; anything at or above the last bound is extreme.
THRESHOLDS: tuple[tuple[float, str], ...] = (
    (8.0, "easy"),
    (15.0, "medium"),
    (30.0, "hard"),
)
EXTREME = "extreme"
UNKNOWN = "unknown"
TIERS: tuple[str, ...] = tuple(name for _, name in THRESHOLDS) + (EXTREME,)


def tier(mae_pct: float | None) -> str:
    """Tier name for a persistence MAE% (easy < 8 ≤ medium < 15 ≤ hard < 30 ≤ extreme).

    A missing or non-finite value gives "unknown" rather than pretending the symbol is easy.
    """
    if mae_pct is None:
        return UNKNOWN
    value = float(mae_pct)
    if not math.isfinite(value) or value < 0:
        return UNKNOWN
    for bound, name in THRESHOLDS:
        if value < bound:
            return name
    return EXTREME
