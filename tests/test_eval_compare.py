"""compare (and validate) with a real tiny model: identical windows, choices on validation only,
metrics from engine.metrics, and poisoned test targets change no pick and no winner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import evaluation as ev
from engine.tasks import compare, validate
from tests.test_eval_support import make_ctx, spec, write_csv
from tests.test_eval_validate import _poison_test_span

PARAMS = {"horizon": 8, "context": 32, "val_windows": 12, "test_windows": 12, "stride": 2}


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _run(tmp: Path, data: Path, kind: str, model: str | None, **extra: object) -> dict:
    mod = {"validate": validate, "compare": compare}[kind]
    return mod.run(spec(kind, ["AAA"], model, **{**PARAMS, **extra}), make_ctx(tmp, data, kind))


def test_toto_pick_ignores_poisoned_test_span(tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    write_csv(clean / "AAA.csv", n=300, seed=4)
    _poison_test_span(clean / "AAA.csv", dirty / "AAA.csv", horizon=8)
    grid = {"num_samples": [4, 8], "aggregations": ["mean", "median", "q0.4"], "contexts": [16, 32]}
    a = _run(tmp_path / "a", clean, "validate", "toto", **grid)["picks"][0]
    b = _run(tmp_path / "b", dirty, "validate", "toto", **grid)["picks"][0]
    assert a["candidates"] == 12 and a["model_calls"] == 3  # one draw per context on val + 1 test draw
    assert a["config"] == b["config"] and a["top"] == b["top"]
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("latency")}  # noqa: E731
    assert strip(a["validation"]) == strip(b["validation"])
    assert a["test"]["mae"] != pytest.approx(b["test"]["mae"])


def test_compare_rows_winner_on_validation_and_metrics_from_engine_metrics(tmp_path: Path) -> None:
    from engine.data import load_symbol
    from engine.metrics import evaluate

    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=6)
    out = _run(tmp_path, data, "compare", None, models=["chronos2", "toto"], top_k=2)
    rows = {r["model"]: r for r in out["comparisons"]}
    assert set(rows) == {"naive", "chronos2", "toto", "ensemble_top2"}
    winners = [m for m, r in rows.items() if r["winner"]]
    assert len(winners) == 1
    # winner = best VALIDATION mae_pct among the models significantly better than naive there, else naive
    significant = [m for m in ("chronos2", "toto") if (rows[m]["validation"]["dm_p_better"] or 1.0) < 0.05]
    expect = min(significant, key=lambda m: rows[m]["validation"]["mae_pct"]) if significant else "naive"
    assert winners[0] == expect and rows[expect]["decision_note"]
    for r in rows.values():
        assert r["windows"]["span"] == "test" and r["selected_on"] == "val" and r["horizon"] == 8
        assert r["preset"] == "tiny" and r["latency_s"] is not None
        for k in ("mae", "mae_pct", "return_mae", "mase", "crps", "coverage80", "dm_stat",
                  "dm_p_two_sided", "dm_p_better"):
            assert k in r["test"] and k in r["validation"]
        assert 0 < r["windows"]["count"] <= 12 and r["windows"]["stride"] >= 2 and r["val_windows"]["span"] == "val"
    # naive row equals engine.metrics.evaluate of naive's variant chosen on validation (no second definition)
    s = load_symbol("AAA", [data])
    setup = ev.build_setup("AAA", horizon=8, context=32, series=s, val_windows=12, test_windows=12, stride=2)
    from engine.forecasters.naive import NAIVE_METHODS

    val_scores = {}
    for name, cls in NAIVE_METHODS.items():
        vp = cls().forecast(setup.val, 1).samples[:, 0, :]
        val_scores[name] = evaluate(setup.val, vp[:, None, :], vp, vp)["mae_pct"]
    method = min(val_scores, key=lambda m: val_scores[m])
    assert rows["naive"]["config"]["method"] == method
    naive = NAIVE_METHODS[method]().forecast(setup.test, 1).samples[:, 0, :]
    ref = evaluate(setup.test, naive[:, None, :], naive, naive)
    assert rows["naive"]["test"]["mae_pct"] == pytest.approx(ref["mae_pct"])
    assert rows["naive"]["improvement_vs_naive_pct"] == pytest.approx(0.0)
    w = rows[winners[0]]
    if winners[0] != "naive":
        assert w["improvement_vs_naive_pct"] == pytest.approx((ref["mae_pct"] - w["test"]["mae_pct"]) / ref["mae_pct"] * 100)
    assert w["improvement_vs_runner_up_pct"] is not None
    md = (make_ctx(tmp_path, data, "compare").reports_dir / "latest-compare.md").read_text()
    assert "| AAA | 8 | naive |" in md and "validation span" in md
    js = json.loads(next((tmp_path / "ws" / "reports").glob("compare-*.json")).read_text())
    assert js["summary"]["winners"] == {"AAA": winners[0]}
