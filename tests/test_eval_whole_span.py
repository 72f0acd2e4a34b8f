"""Whole-span scoring on a shipped symbol at h=64 with default windows: validate, compare and regression
score >= 95 % of the validation and test rows, and the DM p-value vs naive is defined."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import paths
from engine.tasks import compare, regression, validate
from tests.test_eval_regression import _store_with_picks
from tests.test_eval_support import make_ctx, spec

SYMBOL = "AAPL"
H = 64


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _covered(w: dict) -> float:
    return w["rows_covered"] / w["span_rows"]


def test_validate_compare_regression_cover_the_spans_and_dm_is_defined(tmp_path: Path) -> None:
    data = paths.shipped_data_dir()
    ws = tmp_path / "ws"
    # validate: a real tiny model, a one-candidate grid (the windows are what is under test)
    out = validate.run(spec("validate", [SYMBOL], "chronos2", horizon=H, contexts=[128], aggregations=["median"]),
                       make_ctx(tmp_path, data, "validate", ws=ws))
    (pick,) = out["picks"]
    for key in ("val_windows", "test_windows"):
        assert _covered(pick[key]) >= 0.95, pick[key]
    assert pick["test"]["dm_p_two_sided"] is not None and pick["validation"]["dm_p_better"] is not None
    assert out["runs"][0]["extra"]["val_windows"] == pick["val_windows"]

    res = compare.run(spec("compare", [SYMBOL], None, horizon=H, models=["chronos2"], top_k=0),
                      make_ctx(tmp_path, data, "compare", ws=ws))
    row = next(r for r in res["comparisons"] if r["model"] == "chronos2")
    assert _covered(row["windows"]) >= 0.95 and _covered(row["val_windows"]) >= 0.95
    assert row["test"]["dm_p_two_sided"] is not None and row["validation"]["dm_p_better"] is not None

    _store_with_picks(ws, [("naive", SYMBOL, {"method": "seasonal"})], horizon=H)
    reg = regression.run(spec("regression", [SYMBOL], None, horizon=H, models=["naive"]),
                         make_ctx(tmp_path, data, "regression", ws=ws))
    (r,) = reg["regressions"]
    assert _covered(r["windows"]) >= 0.95 and _covered(r["test_windows"]) >= 0.95
    assert r["span"] == "val" and r["test_current"] is not None
