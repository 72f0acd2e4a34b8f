"""Affine calibration of predicted returns, and the cross-fitted way of scoring it on validation.

Why its own module: calibrate fits it, compare and regression score a calibrated pick, and all three
must apply and judge it the same way (`engine.evaluation` re-exports these names). A calibration is
never scored on the windows it was fitted on (`crossfit_calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from engine.selection import EvaluationError

if TYPE_CHECKING:
    from engine.data import Windows


def apply_calibration(point: np.ndarray, last: np.ndarray, calibration: Mapping[str, float] | None) -> np.ndarray:
    """Affine correction in return space: r' = scale * r + bias, with r = point / last - 1."""
    if not calibration:
        return point
    scale = float(calibration.get("scale", 1.0))
    bias = float(calibration.get("bias", 0.0))
    last = np.asarray(last, dtype=np.float64)[:, None]
    r = point / last - 1.0
    return last * (1.0 + scale * r + bias)


def calibrate_samples(samples: np.ndarray, last: np.ndarray, calibration: Mapping[str, float] | None) -> np.ndarray:
    """The same affine correction applied to every sample path (keeps CRPS/coverage consistent)."""
    if not calibration:
        return samples
    w, s, h = samples.shape
    flat = samples.transpose(0, 2, 1).reshape(w, h * s)  # [W, H*S] so `last` broadcasts per window
    out = apply_calibration(flat, last, calibration)
    return out.reshape(w, h, s).transpose(0, 2, 1)


def fit_affine(point: np.ndarray, targets: np.ndarray, last: np.ndarray) -> dict[str, float]:
    """Least-squares scale/bias mapping predicted returns to realised returns."""
    last = np.asarray(last, dtype=np.float64)[:, None]
    r_hat = (np.asarray(point) / last - 1.0).reshape(-1)
    r = (np.asarray(targets) / last - 1.0).reshape(-1)
    ok = np.isfinite(r_hat) & np.isfinite(r)
    r_hat, r = r_hat[ok], r[ok]
    if r.size < 2 or float(np.var(r_hat)) < 1e-18:
        return {"scale": 1.0, "bias": float(np.mean(r - r_hat)) if r.size else 0.0}
    a, b = np.polyfit(r_hat, r, 1)
    return {"scale": float(a), "bias": float(b)}


#: Folds of the cross-fitted calibration (contiguous blocks of validation windows).
CROSSFIT_FOLDS = 2


def crossfit_calibration(point: np.ndarray, samples: np.ndarray, windows: Windows,
                         folds: int = CROSSFIT_FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated (point, samples) where every window's calibration was fitted on OTHER windows.

    The windows are split into `folds` contiguous blocks; a block is calibrated with the affine fit
    of the windows outside it whose targets do not overlap the block's targets (origins at least one
    horizon away). So a calibrated config is never scored on the windows it was fitted on."""
    n = windows.n
    if n < 2 * folds:
        raise EvaluationError(f"cross-fitted calibration needs at least {2 * folds} windows, have {n}")
    origins = np.asarray(windows.origins)
    out_p = np.array(point, dtype=np.float64, copy=True)
    out_s = np.array(samples, dtype=np.float64, copy=True)
    for block in np.array_split(np.arange(n), folds):
        lo, hi = origins[block[0]], origins[block[-1]]
        fit = np.flatnonzero((origins <= lo - windows.horizon) | (origins >= hi + windows.horizon))
        if fit.size < 2:
                raise EvaluationError(f"cross-fitted calibration: too few windows outside block {lo}..{hi} "
                                  f"at horizon {windows.horizon} (raise val_windows or the validation span)")
        cal = fit_affine(point[fit], windows.targets[fit], windows.last_close[fit])
        last = windows.last_close[block]
        out_p[block] = apply_calibration(point[block], last, cal)
        out_s[block] = calibrate_samples(samples[block], last, cal)
    return out_p, out_s
