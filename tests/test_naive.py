"""Naive baselines on real windows built by engine.data from real CSV files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import load_csv, make_windows, split_spans
from engine.difficulty import THRESHOLDS, TIERS, tier
from engine.forecasters.base import Forecaster
from engine.forecasters.naive import NAIVE_METHODS, Drift, Persistence, SeasonalNaive, infer_season


def _series(tmp_path: Path, close: np.ndarray, freq: str = "B", name: str = "TEST"):
    times = pd.date_range("2020-01-01", periods=len(close), freq=freq)
    path = tmp_path / f"{name}.csv"
    pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d"), "close": close}).to_csv(path, index=False)
    return load_csv(path, name)


def _windows(series, horizon: int = 8, context: int = 20, span: str = "test"):
    spans = split_spans(series.n_rows, horizon)
    return make_windows(series, spans, span, context, horizon)


def test_persistence_repeats_last_close(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s = _series(tmp_path, 100 + np.cumsum(rng.normal(size=300)))
    w = _windows(s)
    fc = Persistence().forecast(w)
    assert fc.samples.shape == (w.n, 1, w.horizon)
    assert np.array_equal(fc.samples[:, 0, :], np.repeat(w.last_close[:, None], w.horizon, axis=1))
    many = Persistence().forecast(w, num_samples=4)
    assert many.samples.shape == (w.n, 4, w.horizon)
    assert np.all(many.samples == many.samples[:, :1, :])


def test_drift_is_exact_on_a_line(tmp_path: Path) -> None:
    s = _series(tmp_path, 50.0 + 0.5 * np.arange(300))
    w = _windows(s, horizon=16, context=32)
    point = Drift().forecast(w).samples[:, 0, :]
    assert np.allclose(point, w.targets, atol=1e-9)
    # and the slope comes from the first and last context closes only
    cc = w.context_close
    expected = cc[:, -1:] + ((cc[:, -1] - cc[:, 0]) / (cc.shape[1] - 1))[:, None] * np.arange(1, 17)
    assert np.allclose(point, expected)


@pytest.mark.parametrize(("freq", "season"), [("B", 5), ("D", 7)])
def test_seasonal_naive_exact_on_periodic_series_and_infers_season(tmp_path: Path, freq: str, season: int) -> None:
    pattern = np.array([10.0, 12.0, 11.0, 15.0, 9.0, 14.0, 13.0])[:season]
    s = _series(tmp_path, np.tile(pattern, 80), freq=freq)
    w = _windows(s, horizon=12, context=20)
    assert infer_season(w) == season
    fc = SeasonalNaive().forecast(w)
    assert fc.info["season"] == season
    assert np.allclose(fc.samples[:, 0, :], w.targets)
    other = 7 if season == 5 else 5
    assert not np.allclose(SeasonalNaive(other).forecast(w).samples[:, 0, :], w.targets)


def test_forecasts_see_only_context(tmp_path: Path) -> None:
    """Changing every row at or after a window's first target leaves its forecast unchanged."""
    rng = np.random.default_rng(1)
    close = 100 + np.cumsum(rng.normal(size=300))
    w = _windows(_series(tmp_path, close))
    first = int(w.origins[0])
    changed = close.copy()
    changed[first:] *= 3.0
    w2 = _windows(_series(tmp_path, changed, name="TEST2"))
    for cls in NAIVE_METHODS.values():
        a = cls().forecast(w).samples[0]
        b = cls().forecast(w2).samples[0]
        assert np.array_equal(a, b), cls.name


def test_naive_errors_are_clear(tmp_path: Path) -> None:
    s = _series(tmp_path, np.linspace(10, 20, 200))
    w = _windows(s, horizon=4, context=3)
    with pytest.raises(ValueError, match="at least 5 context rows"):
        SeasonalNaive(5).forecast(w)
    with pytest.raises(ValueError, match="num_samples"):
        Persistence().forecast(w, num_samples=0)
    with pytest.raises(ValueError, match="season"):
        SeasonalNaive(0)


def test_registry_names_and_interface() -> None:
    assert set(NAIVE_METHODS) == {"persistence", "drift", "seasonal"}
    for cls in NAIVE_METHODS.values():
        assert issubclass(cls, Forecaster)
        assert cls.name.startswith("naive_")


def test_difficulty_tiers_boundaries() -> None:
    assert [b for b, _ in THRESHOLDS] == [8.0, 15.0, 30.0]
    assert TIERS == ("easy", "medium", "hard", "extreme")
    assert tier(5.0) == "easy" and tier(7.999) == "easy"
    assert tier(8.0) == "medium" and tier(14.99) == "medium"
    assert tier(15.0) == "hard" and tier(29.9) == "hard"
    assert tier(30.0) == "extreme" and tier(70.0) == "extreme"
    assert tier(float("nan")) == "unknown" and tier(None) == "unknown" and tier(-1.0) == "unknown"


def test_no_torch_on_the_baseline_path() -> None:
    code = (
        "import sys, engine.metrics, engine.difficulty, engine.forecasters.naive, engine.tasks.baseline\n"
        "import console.commands.baseline_cmd\n"
        "rows = engine.tasks.baseline.compute_baselines(['SPY'], [1, 64], None)\n"
        "assert rows and not [r for r in rows if r['error']], rows\n"
        "bad = [m for m in ('torch', 'textual') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
