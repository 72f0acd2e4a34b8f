"""Forecast metrics: one definition each, used by every task, table and report.

Why one definition each: two "MAE%" formulas, or a 1-step return MAE beside a 64-step price MAE%,
look alike in a table and cannot be compared; every number this project shows therefore comes from
the functions below.

Notation: ``y`` are the scored targets, shape ``[W, H]`` (W walk-forward windows, H steps);
``ŷ`` the point forecast ``[W, H]``; ``x`` the sample paths ``[W, S, H]`` (S samples); ``last`` the
last observed close of each window's context ``[W]``; ``scale`` each window's in-sample naive MAE
``[W]``. Means run over every scored target (all windows and steps) unless stated otherwise.

price MAE
    ``mean |y − ŷ|`` (price units).
MAE%
    ``MAE / mean |y| × 100`` over the same scored targets (so a symbol's price level cancels).
return MAE
    ``mean |y/last − ŷ/last|``: error of the return relative to the window's last observed close,
    as a fraction (0.01 = one percentage point of return).
RMSE
    ``sqrt(mean (y − ŷ)²)``.
MASE
    per window ``mean_h |y − ŷ| / scale_w`` where ``scale_w`` is the in-sample one-step naive MAE
    (``mean |diff(close)|`` over train rows before the window, from ``Windows.scale``), then the mean
    over windows. Windows whose scale is not finite and positive are left out; none left → NaN.
CRPS
    ensemble estimator per target ``mean_s |x_s − y| − 1/(2S²) Σ_s Σ_s' |x_s − x_s'|`` (the
    estimator of ``properscoring.crps_ensemble``; not the "fair" 1/(S(S−1)) variant), computed in
    O(S log S) with sorted samples, then the mean over targets (price units). With one sample it
    equals the absolute error, so point forecasts get a comparable score.
coverage80
    fraction of targets inside ``[q10, q90]`` (inclusive), the empirical 10% and 90% quantiles of
    the samples (``numpy.quantile``, linear interpolation). A point forecast covers ~0.
Diebold–Mariano
    loss differential ``d_w = loss_a,w − loss_b,w`` per window (``evaluate`` uses the window's price
    MAE, model minus naive persistence, so a negative statistic favours the model).
    ``DM = mean(d) / sqrt(LRV / T)`` with the Newey–West (Bartlett-weighted) long-run variance
    ``LRV = γ0 + 2 Σ_{j=1..L} (1 − j/(L+1)) γj``, ``γj = 1/T Σ_t (d_t − d̄)(d_{t−j} − d̄)``,
    ``L = h − 1`` lags ("horizon-aware": an h-step forecast's errors overlap for h − 1 steps).
    Harvey–Leybourne–Newbold correction ``DM* = DM · sqrt((T + 1 − 2h + h(h−1)/T) / T)``,
    two-sided p-value from Student t with T − 1 degrees of freedom. This is exactly
    ``statsmodels.tsa.stattools.diebold_mariano_test(y, a, b, lags=h−1, harvey_adj=True, horizon=h)``.
    The one-sided p-value of "a is better than b" (H1: mean d < 0) is ``t.cdf(DM*, T − 1)``: small
    only when the statistic is negative, so a model significantly *worse* than naive never reads as
    a winner. For walk-forward windows `h` is the windows' overlap ``ceil(H / stride)``: with
    stride ≥ H the windows do not overlap and no lags are used.
    Undefined (NaN statistic and p-values, not an error) when T ≤ h, T < 2, or the differential
    has zero variance (e.g. identical forecasts).

Inputs of the wrong shape raise ``ValueError``; NaN in forecasts propagates to NaN metrics rather
than being silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.data import Windows


def finite_or_none(v: Any) -> float | None:
    """A metric value as JSON and the store take it: a float, or None where it is not a finite number
    (an undefined DM test, a NaN forecast)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


METRIC_KEYS: tuple[str, ...] = (
    "mae", "mae_pct", "return_mae", "rmse", "mase", "crps", "coverage80", "dm_stat", "dm_p_two_sided", "dm_p_better",
)


def _pair(y: Any, yhat: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 of one shape; a shape mismatch is a caller bug worth naming."""
    a = np.asarray(y, dtype=np.float64)
    b = np.asarray(yhat, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"targets and forecasts differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0:
        raise ValueError("no targets to score")
    return a, b


def _samples(y: np.ndarray, samples: Any) -> np.ndarray:
    s = np.asarray(samples, dtype=np.float64)
    if y.ndim != 2 or s.ndim != 3:
        raise ValueError(f"need targets [W, H] and samples [W, S, H], got {y.shape} and {s.shape}")
    if s.shape[0] != y.shape[0] or s.shape[2] != y.shape[1] or s.shape[1] < 1:
        raise ValueError(f"samples {s.shape} do not match targets {y.shape} (expected [W, S, H])")
    return s


def price_mae(y: Any, yhat: Any) -> float:
    """Mean absolute error in price units."""
    a, b = _pair(y, yhat)
    return float(np.mean(np.abs(a - b)))


def mae_pct(y: Any, yhat: Any) -> float:
    """MAE / mean|y| × 100 over the scored targets: comparable across price levels."""
    a, b = _pair(y, yhat)
    denom = float(np.mean(np.abs(a)))
    if denom == 0.0:
        return math.nan
    return float(np.mean(np.abs(a - b))) / denom * 100.0


def return_mae(y: Any, yhat: Any, last: Any) -> float:
    """Mean |y/last − ŷ/last|: the return error relative to each window's last observed close."""
    a, b = _pair(y, yhat)
    lc = np.asarray(last, dtype=np.float64)
    if a.ndim == 1:
        a, b = a[None, :], b[None, :]
        lc = lc.reshape(1)
    if lc.shape != (a.shape[0],):
        raise ValueError(f"last closes {lc.shape} do not match {a.shape[0]} windows")
    return float(np.mean(np.abs(a - b) / np.abs(lc)[:, None]))


def rmse(y: Any, yhat: Any) -> float:
    """Root mean squared error in price units."""
    a, b = _pair(y, yhat)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mase(y: Any, yhat: Any, scale: Any) -> float:
    """Mean over windows of (window MAE / window's in-sample one-step naive MAE)."""
    a, b = _pair(y, yhat)
    if a.ndim == 1:
        a, b = a[None, :], b[None, :]
    sc = np.asarray(scale, dtype=np.float64).reshape(-1)
    if sc.shape != (a.shape[0],):
        raise ValueError(f"scale {sc.shape} does not match {a.shape[0]} windows")
    ok = np.isfinite(sc) & (sc > 0)
    if not ok.any():
        return math.nan
    per_window = np.mean(np.abs(a - b), axis=1)[ok] / sc[ok]
    return float(np.mean(per_window))


def crps_per_target(y: Any, samples: Any) -> np.ndarray:
    """CRPS of each target `[W, H]` from samples `[W, S, H]` (properscoring's ensemble estimator).

    Uses Σ_i Σ_j |x_i − x_j| = 2 Σ_i (2i − S − 1) x_(i) over sorted samples, so 4096 samples cost
    a sort rather than a 4096² matrix.
    """
    yy = np.asarray(y, dtype=np.float64)
    x = _samples(yy, samples)
    n_s = x.shape[1]
    term1 = np.mean(np.abs(x - yy[:, None, :]), axis=1)
    xs = np.sort(x, axis=1)
    coef = (2.0 * np.arange(1, n_s + 1) - n_s - 1.0)[None, :, None]
    term2 = np.sum(coef * xs, axis=1) / (n_s * n_s)
    return term1 - term2


def crps(y: Any, samples: Any) -> float:
    """Mean CRPS over all targets, in price units (equals MAE when S = 1)."""
    return float(np.mean(crps_per_target(y, samples)))


def coverage(y: Any, samples: Any, level: float = 0.8) -> float:
    """Share of targets inside the central `level` interval of the samples (80% → q10..q90)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"coverage level must be in (0, 1), got {level}")
    yy = np.asarray(y, dtype=np.float64)
    x = _samples(yy, samples)
    tail = (1.0 - level) / 2.0
    if x.shape[1] == 1:  # every quantile of one sample is that sample
        lo = hi = x[:, 0, :]
    else:
        lo = np.quantile(x, tail, axis=1)
        hi = np.quantile(x, 1.0 - tail, axis=1)
    return float(np.mean((yy >= lo) & (yy <= hi)))


@dataclass(frozen=True)
class DMResult:
    """Diebold–Mariano statistic (HLN-corrected), two-sided p-value and one-sided p-value of "a has
    the smaller loss" (`p_better`); NaN when undefined."""

    stat: float
    pvalue: float
    lags: int = 0
    n: int = 0
    p_better: float = math.nan

    def __iter__(self) -> Iterator[float]:
        """Unpacks as `stat, pvalue = dm`, like statsmodels' result."""
        yield self.stat
        yield self.pvalue


def diebold_mariano(loss_a: Any, loss_b: Any, horizon: int = 1) -> DMResult:
    """DM test of equal accuracy of forecasts a and b from their per-period losses.

    `d = loss_a − loss_b`; a negative statistic means a had the smaller loss. Bartlett-weighted HAC
    variance with `horizon − 1` lags, HLN small-sample factor, Student t with T − 1 df.
    """
    la = np.asarray(loss_a, dtype=np.float64).reshape(-1)
    lb = np.asarray(loss_b, dtype=np.float64).reshape(-1)
    if la.shape != lb.shape:
        raise ValueError(f"loss series differ in length: {la.shape[0]} vs {lb.shape[0]}")
    h = int(horizon)
    if h < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon}")
    t = la.shape[0]
    lags = h - 1
    nan = DMResult(math.nan, math.nan, lags, t)
    if t < 2 or t <= h:
        return nan
    d = la - lb
    if not np.all(np.isfinite(d)):
        return nan
    dbar = float(np.mean(d))
    dc = d - dbar
    lrv = float(np.dot(dc, dc)) / t
    for j in range(1, min(lags, t - 1) + 1):
        w = 1.0 - j / (lags + 1.0)
        lrv += 2.0 * w * float(np.dot(dc[j:], dc[:-j])) / t
    scale_sq = float(np.mean(d * d))
    if not lrv > 1e-12 * scale_sq or scale_sq == 0.0:
        return nan
    dm = dbar / math.sqrt(lrv / t)
    adj = math.sqrt((t + 1 - 2 * h + h * (h - 1) / t) / t)
    stat = adj * dm
    pvalue = student_t_two_sided(stat, t - 1)
    # one-sided "a better than b" (H1: mean d < 0) = t.cdf(stat): half the two-sided tail on a's side
    p_better = pvalue / 2.0 if stat < 0 else 1.0 - pvalue / 2.0
    return DMResult(float(stat), pvalue, lags, t, float(p_better))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularised incomplete beta I_x(a, b) for 0 <= x <= 1; `y` = 1 − x, passed exactly."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, y) / b


def student_t_two_sided(stat: float, df: float) -> float:
    """Two-sided p-value `2·P(T_df > |stat|)` of Student's t, = `2 * scipy.stats.t.cdf(-|stat|, df)`.

    Computed from the incomplete beta function (`P = I_{df/(df+t²)}(df/2, 1/2)`) in plain Python
    because importing scipy.stats costs ~0.8 s, most of a naive job's start-up, for this one number.
    """
    if math.isnan(stat) or df <= 0:
        return math.nan
    if math.isinf(stat):
        return 0.0
    t2 = stat * stat
    return min(1.0, _betainc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2)))


def dm_horizon(windows: Windows) -> int:
    """Overlap of consecutive windows' errors: ceil(H / stride), H for stride-1 windows."""
    origins = np.asarray(windows.origins)
    stride = int(np.min(np.diff(origins))) if origins.size > 1 else windows.horizon
    return max(1, math.ceil(windows.horizon / max(1, stride)))


def evaluate(
    windows: Windows,
    samples: Any,
    point: Any,
    naive_point: Any | None = None,
) -> dict[str, float]:
    """Every metric for one model on one set of windows (keys in `METRIC_KEYS`).

    `samples` `[W, S, H]` feed CRPS and coverage; `point` `[W, H]` feeds the rest. The DM test
    compares the per-window price MAE with `naive_point` `[W, H]`; when that is None, naive
    persistence (each window's last close repeated) on the very same windows is used.
    """
    y = np.asarray(windows.targets, dtype=np.float64)
    p = np.asarray(point, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"point forecast {p.shape} does not match targets {y.shape}")
    last = np.asarray(windows.last_close, dtype=np.float64)
    if naive_point is None:
        naive = np.repeat(last[:, None], y.shape[1], axis=1)
    else:
        naive = np.asarray(naive_point, dtype=np.float64)
        if naive.shape != y.shape:
            raise ValueError(f"naive forecast {naive.shape} does not match targets {y.shape}")
    dm = diebold_mariano(
        np.mean(np.abs(y - p), axis=1), np.mean(np.abs(y - naive), axis=1), dm_horizon(windows)
    )
    return {
        "mae": price_mae(y, p),
        "mae_pct": mae_pct(y, p),
        "return_mae": return_mae(y, p, last),
        "rmse": rmse(y, p),
        "mase": mase(y, p, windows.scale),
        "crps": crps(y, samples),
        "coverage80": coverage(y, samples, 0.8),
        "dm_stat": dm.stat,
        "dm_p_two_sided": dm.pvalue,
        "dm_p_better": dm.p_better,
    }
