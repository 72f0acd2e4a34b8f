"""A promoted pretrained decision without adapter forecasts with the weights folder it was scored
on: two decisions on different folders each reproduce their own test MAE% (served alone and from
one warm-worker model cache), and never share a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.forecasters import cache as model_cache
from engine.paths import PROJECT_ROOT


def _decide(tmp: Path, symbol: str, weights: Path, hp: Path, data: Path) -> None:
    """compare (toto, pretrained from `weights`, no adapter) on `symbol`, promote its toto row."""
    from engine.events import EventWriter
    from engine.jobs import JobSpec
    from engine.tasks import compare
    from engine.tasks.context import TaskContext
    from store import Store

    ws = tmp / f"ws-{symbol}"
    job = ws / "jobs" / "job-compare"
    job.mkdir(parents=True)
    ctx = TaskContext(job_id="job-compare", workspace=ws, job_dir=job,
                      events=EventWriter(job / "events.jsonl", "job-compare"), data_dirs=[data])
    spec = JobSpec.create("compare", [symbol], None, params={
        "models": ["toto"], "horizon": 16, "context": 64, "val_windows": 4, "test_windows": 4, "stride": 8,
        "top_k": 0, "preset": "pretrained", "source": str(weights)})
    out = compare.run(spec, ctx)
    with Store.open(ws, hyperparams_dir=hp) as st:
        st.put_comparisons(out["comparisons"])
        st.promote("toto", symbol, "comparison", horizon=16, preset="pretrained", by="test")
    shutil.rmtree(ws)  # the hand-off must not need the workspace


def test_two_pretrained_decisions_on_different_folders_each_forecast_with_their_own(tmp_path: Path) -> None:
    import torch

    from engine.forecasters.realsize import write_toto
    from engine.forecasters.toto import TINY_CONFIG
    from engine.serve import load_promoted
    from store.best_config import load_best_config

    torch.set_num_threads(1)
    data, hp = tmp_path / "data", tmp_path / "hp"
    data.mkdir()
    for sym in ("SPY", "QQQ"):
        shutil.copy(PROJECT_ROOT / "trainingdata" / "SPY.csv", data / f"{sym}.csv")  # same data: only weights differ
    folders = {"SPY": write_toto(tmp_path / "w1", seed=1, config=TINY_CONFIG),
               "QQQ": write_toto(tmp_path / "w2", seed=2, config=TINY_CONFIG)}
    for sym, w in folders.items():
        _decide(tmp_path, sym, w, hp, data)
    docs = {s: load_best_config("toto", s, hp) for s in folders}
    for s, w in folders.items():
        assert docs[s]["weights"] == {"source": str(w)} and docs[s]["adapter"] is None
        assert docs[s]["base_weights"] == str(w)
    assert docs["SPY"]["test"]["mae_pct"] != docs["QQQ"]["test"]["mae_pct"]  # the folders differ in what they forecast
    try:
        c = model_cache.enable(256)  # as in a warm worker: one process-wide cache
        for s in folders:
            m = load_promoted("toto", s, hp)
            assert abs(m.score(data / f"{s}.csv", "test").mae_pct - docs[s]["test"]["mae_pct"]) < 1e-9
        assert len(c.keys()) == 2 and all(str(w) in "".join(c.keys()) for w in folders.values())  # never shared
    finally:
        model_cache.disable()
    fresh = load_promoted("toto", "QQQ", hp)  # served alone (no cache): the same number
    assert abs(fresh.score(data / "QQQ.csv", "test").mae_pct - docs["QQQ"]["test"]["mae_pct"]) < 1e-9
    shutil.rmtree(folders["QQQ"])
    from engine.forecasters.hub import ModelLoadError

    with pytest.raises(ModelLoadError, match="does not exist"):  # its own folder, not some other weights
        load_promoted("toto", "QQQ", hp).bank()
