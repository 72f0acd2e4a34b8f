"""validate/compare default to the horizon of the fine-tuned run / picks they load (not a fixed 16),
an explicit horizon always wins, and disagreeing picks are re-scored at the most common horizon."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import evaluation as ev
from engine.tasks import compare, validate
from tests.test_eval_support import events_of, make_ctx, spec, write_csv


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _store(ws: Path, runs: list[tuple[str, int]] = (), picks: list[tuple[str, int, dict]] = ()):  # type: ignore[assignment]
    from store.store import Store

    s = Store.open(ws)
    for model, h in runs:
        ckpt = ws / "runs" / f"{model}-{h}" / "adapter"
        ckpt.mkdir(parents=True)
        s.log_run(model, "AAA", {"horizon": h, "preset": "tiny"}, {"val_mae_pct": 1.0}, checkpoint=str(ckpt))
    for model, h, cfg in picks:
        s.set_pick(model, "AAA", {"config": cfg, "selection_metric": "mae_pct", "horizon": h})
    return s


def test_validate_uses_the_loaded_runs_horizon_unless_given(tmp_path: Path) -> None:
    s = _store(tmp_path / "ws", runs=[("toto", 32)])
    try:
        run = ev.latest_checkpoint_run(s, "toto", "AAA")  # the run validate loads as adapter
        assert run is not None and ev.run_horizon(run) == 32
        assert validate.resolve_horizon(None, run) == (32, f"from run {ev.run_id_of(run)}")
        assert validate.resolve_horizon("", run)[0] == 32
        assert validate.resolve_horizon(8, run) == (8, "given")  # explicit wins
        assert validate.resolve_horizon(None, ev.latest_checkpoint_run(s, "kronos", "AAA")) == (16, "default")
    finally:
        s.close()


def test_validate_without_run_keeps_default_horizon(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=1)
    out = validate.run(spec("validate", ["AAA"], "naive", context=32), make_ctx(tmp_path, data))
    assert out["picks"][0]["horizon"] == validate.DEFAULT_HORIZON
    assert out["summary"]["horizon"] == validate.DEFAULT_HORIZON and out["summary"]["horizons"] == {"AAA": 16}


def test_choose_horizon_most_common_and_reports_rescored(tmp_path: Path) -> None:
    s = _store(tmp_path / "ws", runs=[("chronos2", 8)],
               picks=[("toto", 8, {"num_samples": 4}), ("kronos", 4, {"num_samples": 4})])
    try:
        h, why, rescored = compare.choose_horizon(None, s, ["toto", "kronos", "chronos2"], "AAA")
        assert h == 8 and rescored == {"kronos": 4} and "chronos2, toto" in why and "most common" in why
        h, why, rescored = compare.choose_horizon(4, s, ["toto", "kronos", "chronos2"], "AAA")
        assert (h, why) == (4, "given") and rescored == {"toto": 8, "chronos2": 8}
        assert compare.choose_horizon(None, s, ["kronos"], "BBB")[:2] == (16, compare.choose_horizon(None, None, [], "X")[1])
    finally:
        s.close()


def test_compare_without_horizon_scores_at_the_picks_horizon(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=4)
    ws = tmp_path / "ws"
    _store(ws, picks=[("toto", 8, {"num_samples": 4, "aggregation": "median"})]).close()
    ctx = make_ctx(tmp_path, data, "compare", ws=ws)
    out = compare.run(spec("compare", ["AAA"], None, models=["toto"], context=32, val_windows=6, test_windows=6,
                           stride=4, top_k=0), ctx)
    assert {r["horizon"] for r in out["comparisons"]} == {8}
    assert out["summary"]["horizon"] == 8 and out["summary"]["symbols"]["AAA"]["horizon_source"] == "from the picks/runs of toto"
    toto = next(r for r in out["comparisons"] if r["model"] == "toto")
    assert toto["source"] == "pick"
    assert any("h=8 (from the picks/runs of toto)" in e.get("msg", "") for e in events_of(ctx))
