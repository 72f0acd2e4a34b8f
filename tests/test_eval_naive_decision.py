"""Fair selection against naive: a model that beats naive on validation only by noise loses to naive;
a model that is really better wins; the decision says why, with the DM direction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine import evaluation as ev
from engine.forecasters.base import Forecast
from engine.tasks import compare
from tests.test_eval_support import write_csv


class Jitter:
    """Persistence with a small random per-window tilt: no skill, only noise."""

    name = "jitter"

    def __init__(self, noise_seed: int) -> None:
        self.noise_seed = noise_seed

    def forecast(self, windows: Any, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        rng = np.random.default_rng(self.noise_seed)
        tilt = rng.normal(0.0, 0.002, (windows.n, 1))
        point = windows.last_close[:, None] * (1.0 + tilt * np.arange(1, windows.horizon + 1)[None, :] / windows.horizon)
        return Forecast(samples=np.repeat(point[:, None, :], num_samples, axis=1), latency_s=0.0)


class Oracle:
    """Knows the series (a test device for "really better"): the truth plus small noise."""

    name = "oracle"

    def __init__(self, close: np.ndarray) -> None:
        self.close = close

    def forecast(self, windows: Any, num_samples: int = 1, *, seed: int = 0, **params: Any) -> Forecast:
        idx = windows.origins[:, None] + np.arange(windows.horizon)[None, :]
        truth = self.close[idx]
        rng = np.random.default_rng(seed)
        point = truth * (1.0 + rng.normal(0.0, 0.001, truth.shape))
        return Forecast(samples=np.repeat(point[:, None, :], num_samples, axis=1), latency_s=0.0)


def _setup(tmp_path: Path, n: int = 1200) -> tuple[ev.EvalSetup, np.ndarray]:
    from engine.data import load_csv

    s = load_csv(write_csv(tmp_path / "AAA.csv", n=n, seed=11, drift=0.0, vol=0.01), "AAA")
    return ev.build_setup("AAA", horizon=8, context=32, series=s), s.close


def _compare(setup: ev.EvalSetup, fc: Any) -> dict[str, Any]:
    cache = ev.ModelCache(loader=lambda model, preset, adapter=None, device="cpu": fc)
    return compare.compare_symbol(cache, None, setup, ["toto"], preset="tiny", seed=0, metric="mae_pct", top_k=0)


def test_model_searched_until_it_beats_naive_by_noise_loses_to_naive(tmp_path: Path) -> None:
    setup, _ = _setup(tmp_path)
    # the "search": 40 noise seeds, keep the best on validation (what a grid search does)
    results = [_compare(setup, Jitter(noise_seed)) for noise_seed in range(40)]
    res = min(results, key=lambda r: next(x for x in r["rows"] if x["model"] == "toto")["validation"]["mae_pct"])
    found = {r["model"]: r for r in res["rows"]}
    assert found["toto"]["validation"]["mae_pct"] < found["naive"]["validation"]["mae_pct"]  # it does look better on validation
    assert res["winner"] == "naive" and found["naive"]["winner"] and not found["toto"]["winner"]
    assert res["decision"].startswith("no model beats naive significantly: keep naive (toto: not significantly "
                                      "better than naive on validation")
    assert found["naive"]["decision_note"] == res["decision"]  # what Compare shows for the naive winner
    assert found["toto"]["validation"]["dm_p_better"] >= 0.05
    v = found["toto"]["validation"]
    assert ev.dm_label(v["dm_stat"], v["dm_p_two_sided"]).startswith(("better, p=", "worse, p="))


def test_really_better_model_replaces_naive_and_says_so(tmp_path: Path) -> None:
    setup, close = _setup(tmp_path)
    res = _compare(setup, Oracle(close))
    rows = {r["model"]: r for r in res["rows"]}
    assert res["winner"] == "toto" and rows["toto"]["winner"]
    assert rows["toto"]["validation"]["dm_p_better"] < 0.05 and rows["toto"]["validation"]["dm_stat"] < 0
    t = rows["toto"]["test"]
    assert ev.dm_label(t["dm_stat"], t["dm_p_two_sided"]).startswith("better, p=") and "better than naive on validation" in res["decision"]
    # the one-sided p of a significantly WORSE forecast is ~1: a worse model never reads as a winner
    assert rows["toto"]["test"]["dm_p_better"] < 0.05


def test_dm_is_defined_with_whole_span_windows_at_long_horizon(tmp_path: Path) -> None:
    """At h=64 the old 32 stride-1 windows gave T <= h and no p-value; the whole span gives one."""
    from engine.data import load_csv

    s = load_csv(write_csv(tmp_path / "AAA.csv", n=2000, seed=2, drift=0.0, vol=0.01), "AAA")
    setup = ev.build_setup("AAA", horizon=64, context=64, series=s)
    res = _compare(setup, Oracle(s.close))
    row = next(r for r in res["rows"] if r["model"] == "toto")
    assert row["test"]["dm_p_two_sided"] is not None and row["validation"]["dm_p_two_sided"] is not None
    for spec in (row["windows"], row["val_windows"]):
        assert spec["rows_covered"] >= 0.95 * spec["span_rows"]
