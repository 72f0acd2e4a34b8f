"""regression and calibrate on a real store (TinyDB) with naive-model picks (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import evaluation as ev
from engine.jobs import JobSpec
from engine.tasks import calibrate, regression
from tests.test_eval_support import make_ctx, spec, write_csv


def _store_with_picks(ws: Path, picks: list[tuple[str, str, dict]], horizon: int = 8) -> None:
    from store.store import Store

    s = Store.open(ws)
    try:
        for model, symbol, cfg in picks:
            s.set_pick(model, symbol, {"config": cfg, "selection_metric": "mae_pct", "horizon": horizon})
    finally:
        s.close()


def test_regression_flags_worse_pick_and_proposes_jobs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=1, drift=-0.01, vol=0.001)  # steady fall: drift beats persistence
    ws = tmp_path / "ws"
    # previous pick: drift (good); current pick: seasonal (worse) -> flagged vs previous
    _store_with_picks(ws, [("naive", "AAA", {"method": "drift"}), ("naive", "AAA", {"method": "seasonal"})])
    ctx = make_ctx(tmp_path, data, "regression", ws=ws)
    out = regression.run(spec("regression", ["AAA"], None, models=["naive"], horizon=8, context=32), ctx)
    (row,) = out["regressions"]
    assert row["previous"] < row["current"] and row["worse_than_previous"] and row["flagged"]
    assert row["delta_vs_previous_pct"] > 5
    # naive has no weights: flagged with the reason only, no train/validate job (it could only fail)
    assert row["proposed_jobs"] == [] and "naive has nothing to train" in row["reason"]
    assert out["summary"]["flagged"] == ["naive/AAA"]
    md = (ctx.reports_dir / f"regression-{ctx.job_id}.md").read_text()
    assert "| AAA | naive |" in md and "propose:" not in md
    # a trainable model's proposals are valid specs: one action away from the queue
    jobs = regression.proposed_jobs("toto", "AAA", preset="tiny", horizon=8, context=32, reason="worse")
    assert [j["kind"] for j in jobs] == ["train", "validate"]
    again = JobSpec.from_dict(jobs[0])
    assert again.symbols == ("AAA",) and again.model == "toto" and again.params["horizon"] == 8
    json.loads((ctx.reports_dir / f"regression-{ctx.job_id}.json").read_text())


def test_regression_not_flagged_when_better_and_bad_threshold(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=1, drift=-0.01, vol=0.001)
    ws = tmp_path / "ws"
    _store_with_picks(ws, [("naive", "AAA", {"method": "seasonal"}), ("naive", "AAA", {"method": "drift"})])
    ctx = make_ctx(tmp_path, data, "regression", ws=ws)
    out = regression.run(spec("regression", ["AAA"], None, models=["naive"], horizon=8, context=32), ctx)
    (row,) = out["regressions"]
    assert not row["flagged"] and row["proposed_jobs"] == [] and row["reason"] == "ok"
    from engine.jobs import JobSpecError

    with pytest.raises(JobSpecError, match="'threshold_pct' must be greater than or equal to 0"):  # at submit
        spec("regression", ["AAA"], None, models=["naive"], threshold_pct=-1)


def test_fit_affine_recovers_known_map() -> None:
    rng = np.random.default_rng(0)
    last = rng.uniform(50, 150, 40)
    r_hat = rng.normal(0, 0.02, (40, 4))
    targets = last[:, None] * (1 + 0.5 * r_hat + 0.003)
    point = last[:, None] * (1 + r_hat)
    cal = calibrate.fit_affine(point, targets, last)
    assert cal["scale"] == pytest.approx(0.5, abs=1e-9) and cal["bias"] == pytest.approx(0.003, abs=1e-9)



def test_crossfit_calibration_never_uses_a_window_to_fit_itself(tmp_path: Path) -> None:
    """Each block's calibration equals the fit on the windows outside it (at least a horizon away)."""
    from engine.data import load_csv, make_windows, split_spans

    s = load_csv(write_csv(tmp_path / "AAA.csv", n=320, seed=3), "AAA")
    w = make_windows(s, split_spans(s.n_rows, 4), "val", 16, 4)
    rng = np.random.default_rng(1)
    point = w.last_close[:, None] * (1 + rng.normal(0, 0.01, (w.n, 4)))
    samples = point[:, None, :] + rng.normal(0, 0.1, (w.n, 3, 4))
    cp, cs = ev.crossfit_calibration(point, samples, w)
    first = np.array_split(np.arange(w.n), 2)[0]
    outside = np.flatnonzero(w.origins >= w.origins[first[-1]] + 4)
    cal = ev.fit_affine(point[outside], w.targets[outside], w.last_close[outside])
    np.testing.assert_allclose(cp[first], ev.apply_calibration(point[first], w.last_close[first], cal))
    # poisoning the block's own targets changes nothing about its calibrated forecast
    w2 = w.subset(np.arange(w.n))
    w2.targets[first] = 1e6
    np.testing.assert_allclose(ev.crossfit_calibration(point, samples, w2)[0][first], cp[first])
    with pytest.raises(ev.EvaluationError, match="at least 4 windows"):
        ev.crossfit_calibration(point[:3], samples[:3], w.subset(np.arange(3)))


def test_calibrate_reports_verdict_either_way(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # drift forecasts overshoot a noisy walk; whatever the verdict, it must be stated with test numbers
    write_csv(data / "AAA.csv", n=320, seed=5, drift=0.002, vol=0.01)
    ws = tmp_path / "ws"
    _store_with_picks(ws, [("naive", "AAA", {"method": "drift"})], horizon=4)
    ctx = make_ctx(tmp_path, data, "calibrate", ws=ws)
    out = calibrate.run(spec("calibrate", ["AAA"], "naive", horizon=4, context=32, val_windows=40), ctx)
    verdict = out["summary"]["verdicts"]["AAA"]
    assert verdict.startswith(("kept", "dropped"))
    res = json.loads((ctx.reports_dir / f"calibrate-{ctx.job_id}.json").read_text())["results"]["AAA"]
    assert res["kept"] == (len(out["picks"]) == 1)
    assert res["kept"] == res["val_improved"]  # default: the decision is made on validation only
    assert res["val_improved"] == (res["val_crossfit_after"] < res["val_crossfit_before"])
    if out["picks"]:
        assert out["picks"][0]["config"]["calibration"] == res["calibration"]
        assert out["picks"][0]["config"]["method"] == "drift"
    if res["kept"] and not res["test_improved"]:
        assert "did not generalise" in verdict
