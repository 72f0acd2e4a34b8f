"""validate: the search runs on validation, the winner is reported on test, and test data never
influences a pick (poisoned test targets change no choice and no validation number)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import evaluation as ev
from engine.tasks import validate
from tests.test_eval_support import events_of, make_ctx, spec, write_csv


def _poison_test_span(src: Path, dst: Path, horizon: int, seed: int = 9) -> None:
    """Copy the CSV, replacing every row of the test span with garbage (valid but absurd bars)."""
    from engine.data import split_spans

    df = pd.read_csv(src)
    spans = split_spans(len(df), horizon)
    rng = np.random.default_rng(seed)
    lo = spans.val_end
    garbage = rng.uniform(1.0, 10_000.0, len(df) - lo)
    for col in ("open", "close"):
        df.loc[lo:, col] = garbage
    df.loc[lo:, "high"] = garbage * 1.5
    df.loc[lo:, "low"] = garbage * 0.5
    dst.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(dst, index=False)


def _picks(tmp: Path, data: Path, model: str, **params: object) -> list[dict]:
    ctx = make_ctx(tmp, data)
    out = validate.run(spec("validate", ["AAA"], model, **params), ctx)
    return out["picks"]


def test_naive_validate_picks_on_val_and_reports_test(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=1, drift=0.01, vol=0.001)
    ctx = make_ctx(tmp_path, data)
    out = validate.run(spec("validate", ["AAA"], "naive", horizon=8, context=32), ctx)
    (pick,) = out["picks"]
    assert pick["symbol"] == "AAA" and pick["model"] == "naive" and pick["selection_span"] == "val"
    assert pick["config"]["method"] in ("persistence", "drift", "seasonal")
    # strong drift: the drift method must win on validation
    assert pick["config"]["method"] == "drift"
    # naive's variant is selected on validation like any model: the reference is drift too
    assert pick["naive"]["method"] == "drift"
    assert pick["validation"]["mae_pct"] == pick["naive"]["validation"]["mae_pct"]
    for key in ("mae", "mae_pct", "return_mae", "mase", "crps", "coverage80", "dm_p_two_sided", "dm_p_better"):
        assert key in pick["test"]
    assert pick["horizon"] == 8 and pick["context"] == 32
    assert pick["spans"]["val_end"] <= pick["test_windows"]["first_origin"]
    # whole span by default: every origin of each span, targets covering all of its rows
    for span in ("val", "test"):
        spec_ = pick[f"{span}_windows"]
        assert spec_["stride"] == 1 and spec_["rows_covered"] == spec_["span_rows"]
    assert out["runs"][0]["metrics"]["val_mae_pct"] == pick["validation"]["mae_pct"]
    types = {e["type"] for e in events_of(ctx)}
    assert {"log", "progress", "metric"} <= types


def test_poisoned_test_targets_change_no_pick(tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    write_csv(clean / "AAA.csv", n=300, seed=3)
    _poison_test_span(clean / "AAA.csv", dirty / "AAA.csv", horizon=8)
    a = _picks(tmp_path / "a", clean, "naive", horizon=8, context=32)[0]
    b = _picks(tmp_path / "b", dirty, "naive", horizon=8, context=32)[0]
    assert a["config"] == b["config"]
    strip = lambda m: {k: v for k, v in m.items() if not k.startswith("latency")}  # noqa: E731
    assert strip(a["validation"]) == strip(b["validation"])
    assert a["top"] == b["top"]  # the whole ranking, not only the winner
    assert a["test"]["mae"] != pytest.approx(b["test"]["mae"])  # test really was poisoned


def test_bad_input_is_refused_before_any_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300)
    ctx = make_ctx(tmp_path, data)
    with pytest.raises(ev.EvaluationError, match="unknown aggregation"):
        validate.run(spec("validate", ["AAA"], "toto", aggregations=["bogus"]), ctx)
    with pytest.raises(ev.EvaluationError, match="cannot select on"):
        validate.run(spec("validate", ["AAA"], "naive", selection_metric="dm_p_two_sided"), ctx)
    from engine.jobs import JobSpecError

    with pytest.raises(JobSpecError, match="'mode' must be 'quick' or 'full'"):  # refused at submit
        spec("validate", ["AAA"], "naive", mode="huge")
    assert not (ctx.workspace / "store.json").exists()


def test_search_space_sizes() -> None:
    toto = validate.search_space("toto", context=64)
    assert len(toto) == 1 and len(toto[0].aggregations) >= 7 and toto[0].sample_sizes == [8, 16, 32]
    kron_full = validate.search_space("kronos", context=64, mode="full")
    assert len(kron_full) == 4 * 4 * 3 * 2 * 2
    chron = validate.search_space("chronos2", context=128)
    assert [g.context for g in chron] == [32, 64, 128]


def test_each_symbol_gets_its_own_draw_in_a_multi_symbol_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=1)
    write_csv(data / "BBB.csv", n=300, seed=2, vol=0.05)
    both = validate.run(spec("validate", ["AAA", "BBB"], "naive", horizon=8, context=32), make_ctx(tmp_path / "x", data))
    alone = validate.run(spec("validate", ["BBB"], "naive", horizon=8, context=32), make_ctx(tmp_path / "y", data))
    assert both["picks"][1]["symbol"] == "BBB"
    assert both["picks"][1]["validation"]["mae"] == alone["picks"][0]["validation"]["mae"]
    assert both["picks"][1]["test"]["mae"] == alone["picks"][0]["test"]["mae"]
