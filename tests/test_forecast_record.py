"""Validate and compare keep the per-window forecasts they scored (store.forecasts): the file's
point forecasts reproduce the recorded metrics on its own actuals, naive is persistence, the band
brackets the point, validate spends no extra model call, compare reproduces each pick's validation
score exactly (whatever num_samples it picked), and a bad file is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.metrics import mae_pct
from engine.tasks import compare, validate
from store.forecasts import ForecastFileError, array_name, read_forecasts
from store.workspace import Workspace
from tests.test_eval_support import make_ctx, spec, write_csv

PARAMS = {"horizon": 8, "context": 32, "val_windows": 6, "test_windows": 6, "stride": 4}


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _targets(f, span: str) -> np.ndarray:  # noqa: ANN001
    return f.arrays[array_name(span, "actual")][:, f.meta.history:]


def test_validate_then_compare_keep_the_forecasts_they_scored(tmp_path: Path) -> None:
    from store import Store

    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=6)
    # validate: the winner and naive, no model call beyond the search's val draw and the test draw
    vctx = make_ctx(tmp_path, data, "validate")
    grid = {"num_samples": [4, 8], "aggregations": ["median"]}
    out = validate.run(spec("validate", ["AAA"], "toto", **grid, **PARAMS), vctx)
    pick = out["picks"][0]
    assert pick["model_calls"] == 2  # toto's draws nest: the 4-sample candidate is a prefix of the 8-draw
    f = read_forecasts(Workspace(vctx.workspace).forecast_file(vctx.job_id, "AAA", 8))
    assert [m.name for m in f.meta.models] == ["toto", "naive"] and f.meta.job_kind == "validate"
    assert f.meta.models[0].config == pick["config"] and f.meta.models[0].source == "pick"
    got = mae_pct(_targets(f, "test"), f.arrays[array_name("test", "point", 0)])
    assert got == pytest.approx(pick["test"]["mae_pct"], rel=1e-4)

    # kronos too (one sampling setting): its pick here is the 4-sample candidate, scored in the search
    # on a prefix of the 8-sample draw
    kgrid = {**grid, "aggregations": ["mean"], "temperature": [1.0], "top_p": [0.9]}
    kctx = make_ctx(tmp_path / "kronos", data, "validate")
    kpick = validate.run(spec("validate", ["AAA"], "kronos", **kgrid, **PARAMS), kctx)["picks"][0]
    assert kpick["model_calls"] == 2

    # compare (with those picks): every row's val/test MAE% is reproduced from the file's own actuals
    st = Store.open(vctx.workspace)
    try:
        st.set_pick("toto", "AAA", pick, job_id=vctx.job_id)
        st.set_pick("kronos", "AAA", kpick, job_id=kctx.job_id)
    finally:
        st.close()
    ctx = make_ctx(tmp_path, data, "compare", ws=vctx.workspace)
    out = compare.run(spec("compare", ["AAA"], None, models=["toto", "kronos"], top_k=0, **PARAMS), ctx)
    f = read_forecasts(Workspace(ctx.workspace).forecast_file(ctx.job_id, "AAA", 8))
    assert (f.meta.job_kind, f.meta.horizon, f.count("val"), f.count("test")) == ("compare", 8, 6, 6)
    assert [m.name for m in f.meta.models] == ["naive", "toto", "kronos"]
    rows = {r["model"]: r for r in out["comparisons"]}
    # compare draws each pick's config afresh: its validation score is the one the pick recorded, exactly
    for p in (pick, kpick):
        assert rows[p["model"]]["config"] == p["config"]
        assert rows[p["model"]]["validation"]["mae_pct"] == p["validation"]["mae_pct"], p["model"]
    for i, m in enumerate(f.meta.models):
        for span, key in (("val", "validation"), ("test", "test")):
            got = mae_pct(_targets(f, span), f.arrays[array_name(span, "point", i)])
            assert got == pytest.approx(rows[m.name][key]["mae_pct"], rel=1e-4), (m.name, span)
    w = f.window("test", 2, f.meta.model_index("toto"))
    assert w.offsets[0] == -f.meta.history and w.offsets[-1] == 7
    assert np.all(w.q10 <= w.q90)
    if f.meta.naive_method == "persistence":  # repeats the last context close
        assert np.allclose(w.naive, w.actual[f.meta.history - 1])
    assert f.meta.windows["test"].count == rows["toto"]["windows"]["count"]


def test_unreadable_or_inconsistent_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(ForecastFileError, match="unreadable"):
        read_forecasts(bad)
    with pytest.raises(ForecastFileError, match="no forecast file"):
        read_forecasts(tmp_path / "missing.npz")
    np.savez(tmp_path / "y.npz", meta=np.array("{}"))
    with pytest.raises(ForecastFileError, match="no valid header"):
        read_forecasts(tmp_path / "y.npz")
