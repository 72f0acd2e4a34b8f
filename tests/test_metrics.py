"""engine.metrics cross-checked against reference libraries (utilsforecast, properscoring, statsmodels)."""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import properscoring as ps
import pytest
from statsmodels.tsa.stattools import diebold_mariano_test
from utilsforecast import losses as ufl

from engine import metrics as M

TOL = 1e-9


def _windows(close: np.ndarray, context_len: int, horizon: int, stride: int = 1) -> SimpleNamespace:
    """A Windows-shaped object built by hand (same fields as engine.data.Windows)."""
    origins = np.arange(context_len, len(close) - horizon + 1, stride, dtype=np.int64)
    ctx = np.stack([np.stack([close[o - context_len:o]] * 5, axis=-1) for o in origins])
    targets = np.stack([close[o:o + horizon] for o in origins])
    scale = np.array([np.mean(np.abs(np.diff(close[:o]))) for o in origins])
    return SimpleNamespace(
        symbol="TEST", span="test", context_len=context_len, horizon=horizon, origins=origins,
        context=ctx, targets=targets, scale=scale, n=len(origins),
        context_close=ctx[:, :, 3], last_close=ctx[:, -1, 3],
    )


def _long(y: np.ndarray, yhat: np.ndarray, ids: np.ndarray | None = None) -> pd.DataFrame:
    n = y.size
    return pd.DataFrame({
        "unique_id": ids if ids is not None else np.zeros(n, dtype=int),
        "ds": np.arange(n),
        "y": y.ravel(),
        "model": yhat.ravel(),
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mae_rmse_match_utilsforecast(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.lognormal(3, 1, size=(17, 8))
    yhat = y + rng.standard_t(3, size=y.shape) * 5
    df = _long(y, yhat)
    assert abs(M.price_mae(y, yhat) - ufl.mae(df, ["model"])["model"].iloc[0]) < TOL
    assert abs(M.rmse(y, yhat) - ufl.rmse(df, ["model"])["model"].iloc[0]) < TOL


def test_mae_pct_and_return_mae_by_definition() -> None:
    y = np.array([[100.0, 110.0], [200.0, 190.0]])
    yhat = np.array([[90.0, 110.0], [210.0, 200.0]])
    last = np.array([100.0, 200.0])
    # MAE = (10 + 0 + 10 + 10) / 4 = 7.5; mean|y| = 150 → 5%
    assert M.price_mae(y, yhat) == pytest.approx(7.5, abs=TOL)
    assert M.mae_pct(y, yhat) == pytest.approx(5.0, abs=TOL)
    # returns: |10/100|, 0, |10/200|, |10/200| → mean 0.05
    assert M.return_mae(y, yhat, last) == pytest.approx(0.05, abs=TOL)
    assert math.isnan(M.mae_pct(np.zeros((1, 2)), np.ones((1, 2))))


@pytest.mark.parametrize("seed", [3, 4])
def test_mase_matches_utilsforecast_per_window(seed: int) -> None:
    """Each window is a series whose train part gives the scale; MASE is the mean over windows."""
    rng = np.random.default_rng(seed)
    w, h, n_train = 6, 5, 30
    trains = [np.cumsum(rng.normal(size=n_train)) + 50 for _ in range(w)]
    y = np.stack([t[-1] + np.cumsum(rng.normal(size=h)) for t in trains])
    yhat = y + rng.normal(size=y.shape)
    scale = np.array([np.mean(np.abs(np.diff(t))) for t in trains])
    ids = np.repeat(np.arange(w), h)
    df = _long(y, yhat, ids)
    df["ds"] = np.tile(np.arange(n_train, n_train + h), w)
    train_df = pd.DataFrame({
        "unique_id": np.repeat(np.arange(w), n_train),
        "ds": np.tile(np.arange(n_train), w),
        "y": np.concatenate(trains),
    })
    ref = ufl.mase(df, ["model"], seasonality=1, train_df=train_df)["model"].to_numpy()
    assert abs(M.mase(y, yhat, scale) - ref.mean()) < TOL


def test_mase_skips_zero_scale_windows_and_nan_when_none() -> None:
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    yhat = y + np.array([[1.0, 1.0], [2.0, 2.0]])
    assert M.mase(y, yhat, [0.5, 0.0]) == pytest.approx(2.0, abs=TOL)
    assert math.isnan(M.mase(y, yhat, [0.0, np.nan]))


@pytest.mark.parametrize("n_samples", [1, 2, 7, 64])
def test_crps_matches_properscoring(n_samples: int) -> None:
    rng = np.random.default_rng(n_samples)
    y = rng.normal(100, 5, size=(9, 4))
    x = rng.normal(100, 5, size=(9, n_samples, 4))
    ref = ps.crps_ensemble(y, np.moveaxis(x, 1, -1))
    assert np.max(np.abs(M.crps_per_target(y, x) - ref)) < TOL
    assert abs(M.crps(y, x) - ref.mean()) < TOL


def test_crps_edge_cases() -> None:
    y = np.array([[1.0, 2.0]])
    # ties in the ensemble and the target sitting on a member
    x = np.array([[[1.0, 2.0], [1.0, 2.0], [3.0, 2.0]]])
    ref = ps.crps_ensemble(y, np.moveaxis(x, 1, -1))
    assert np.max(np.abs(M.crps_per_target(y, x) - ref)) < TOL
    # a single sample scores its absolute error
    assert M.crps(y, x[:, :1, :]) == pytest.approx(M.price_mae(y, x[:, 0, :]), abs=TOL)
    with pytest.raises(ValueError, match="do not match"):
        M.crps(y, np.ones((1, 3, 5)))


def test_coverage_uses_10_90_quantiles() -> None:
    x = np.tile(np.arange(11, dtype=float)[None, :, None], (1, 1, 4))  # q10 = 1, q90 = 9
    y = np.array([[0.5, 1.0, 9.0, 9.5]])
    assert M.coverage(y, x) == pytest.approx(0.5)
    assert M.coverage(y, x[:, :1, :]) == 0.0  # a point forecast covers only exact hits
    with pytest.raises(ValueError):
        M.coverage(y, x, level=1.0)


@pytest.mark.parametrize(("t", "h"), [(40, 1), (60, 2), (100, 8), (200, 64), (66, 64)])
@pytest.mark.parametrize("criterion", ["mae", "mse"])
def test_diebold_mariano_matches_statsmodels(t: int, h: int, criterion: str) -> None:
    rng = np.random.default_rng(t * 1000 + h)
    y = np.cumsum(rng.normal(size=t))
    a = y + rng.normal(size=t)
    b = y + 1.3 * rng.normal(size=t) + 0.2
    loss = (lambda e: np.abs(e)) if criterion == "mae" else (lambda e: e**2)
    ref = diebold_mariano_test(y, a, b, lags=h - 1, criterion=criterion, harvey_adj=True, horizon=h)
    got = M.diebold_mariano(loss(y - a), loss(y - b), h)
    assert abs(got.stat - ref.statistic) < TOL
    assert abs(got.pvalue - ref.pvalue) < TOL
    assert got.lags == ref.lags == h - 1
    stat, p = got
    assert (stat, p) == (got.stat, got.pvalue)
    # one-sided "a better than b": half the two-sided p on a's side, 1 - p/2 on the other
    assert abs(got.p_better - (ref.pvalue / 2 if ref.statistic < 0 else 1 - ref.pvalue / 2)) < TOL


def test_diebold_mariano_sign_and_power() -> None:
    rng = np.random.default_rng(7)
    y = rng.normal(size=300)
    good, bad = np.abs(rng.normal(0, 0.5, 300)), np.abs(rng.normal(0, 2.0, 300))
    dm = M.diebold_mariano(good, bad, 1)
    assert dm.stat < 0 and dm.pvalue < 1e-6 and dm.p_better < 1e-6
    worse = M.diebold_mariano(bad, good, 1)
    assert worse.stat == pytest.approx(-dm.stat)
    # significantly WORSE: the two-sided p is tiny, the one-sided "better" p is ~1
    assert worse.pvalue < 1e-6 and worse.p_better > 1 - 1e-6
    del y


def test_diebold_mariano_degenerate_is_nan_not_crash() -> None:
    loss = np.abs(np.random.default_rng(0).normal(size=50))
    same = M.diebold_mariano(loss, loss, 4)
    assert math.isnan(same.stat) and math.isnan(same.pvalue)
    const = M.diebold_mariano(loss, loss + 1.0, 1)  # zero-variance differential
    assert math.isnan(const.pvalue)
    short = M.diebold_mariano(loss[:10], loss[:10] * 2, 10)  # T <= h
    assert math.isnan(short.pvalue)
    assert math.isnan(M.diebold_mariano([1.0], [2.0], 1).pvalue)
    assert math.isnan(M.diebold_mariano(loss, np.full(50, np.nan), 1).pvalue)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = diebold_mariano_test(np.ones(50), np.ones(50), np.ones(50), lags=3, harvey_adj=True, horizon=4)
    assert math.isnan(ref.pvalue)  # the reference agrees: undefined
    with pytest.raises(ValueError, match="length"):
        M.diebold_mariano(loss, loss[:-1], 1)
    with pytest.raises(ValueError, match="horizon"):
        M.diebold_mariano(loss, loss, 0)


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        M.price_mae(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="no targets"):
        M.rmse(np.ones((0, 3)), np.ones((0, 3)))
    with pytest.raises(ValueError, match="last closes"):
        M.return_mae(np.ones((2, 3)), np.ones((2, 3)), np.ones(3))


def test_evaluate_keys_and_consistency() -> None:
    rng = np.random.default_rng(11)
    close = 100 + np.cumsum(rng.normal(size=400))
    win = _windows(close, context_len=32, horizon=8, stride=1)
    samples = win.last_close[:, None, None] + rng.normal(0, 2, size=(win.n, 50, 8))
    point = np.median(samples, axis=1)
    res = M.evaluate(win, samples, point)
    assert tuple(res) == M.METRIC_KEYS
    assert res["mae"] == pytest.approx(M.price_mae(win.targets, point))
    assert res["mase"] == pytest.approx(M.mase(win.targets, point, win.scale))
    assert 0.0 <= res["coverage80"] <= 1.0
    persistence = np.repeat(win.last_close[:, None], 8, axis=1)
    explicit = M.evaluate(win, samples, point, naive_point=persistence)
    assert explicit["dm_stat"] == res["dm_stat"] and np.isfinite(res["dm_p_two_sided"]) and np.isfinite(res["dm_p_better"])
    # DM against naive uses per-window price MAE with h-1 lags (stride 1 → h = 8)
    ref = diebold_mariano_test(
        np.zeros(win.n), np.abs(win.targets - point).mean(1), np.abs(win.targets - persistence).mean(1),
        lags=7, criterion="mae", harvey_adj=True, horizon=8,
    )
    assert abs(res["dm_stat"] - ref.statistic) < TOL
    # persistence against itself: DM undefined, other metrics fine
    own = M.evaluate(win, persistence[:, None, :], persistence)
    assert math.isnan(own["dm_p_two_sided"]) and math.isnan(own["dm_p_better"]) and own["crps"] == pytest.approx(own["mae"])


def test_dm_horizon_follows_stride() -> None:
    close = np.linspace(1, 2, 200)
    assert M.dm_horizon(_windows(close, 10, 16, stride=1)) == 16
    assert M.dm_horizon(_windows(close, 10, 16, stride=4)) == 4
    assert M.dm_horizon(_windows(close, 10, 16, stride=32)) == 1


@pytest.mark.parametrize("df", [1, 2, 5, 31, 200, 5000])
def test_student_t_p_value_matches_scipy(df: int) -> None:
    """The DM p-value's t tail is computed without scipy (import cost); it must equal scipy's."""
    from scipy import stats

    for t in (0.0, 1e-6, 0.05, 0.7, 1.0, 1.96, 2.5, 4.0, 12.0, -3.0):
        assert M.student_t_two_sided(t, df) == pytest.approx(2 * stats.t.cdf(-abs(t), df), abs=TOL, rel=TOL)
    assert math.isnan(M.student_t_two_sided(math.nan, df))
    assert M.student_t_two_sided(math.inf, df) == 0.0


def test_metrics_import_does_not_load_scipy() -> None:
    import subprocess
    import sys

    code = "import sys, engine.metrics; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
