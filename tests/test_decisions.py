"""A decision end to end: compare rows at two horizons → promote exactly the highlighted row (config and
adapter byte for byte) → delete the workspace → the forecast API reproduces the promoted test MAE%
and forecasts the next H rows; naive is a decision too, and `load_winner` answers across models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.tasks import compare, validate
from store import Store, StoreError
from store.best_config import load_best_config, load_winner
from tests.test_eval_support import make_ctx, spec, write_csv

PARAMS = {"context": 32, "val_windows": 12, "test_windows": 10, "stride": 2, "top_k": 0}


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def _adapter(path: Path) -> Path:
    """A real toto LoRA adapter (random, non-zero LoRA matrices) written by the adapter code."""
    from engine.forecasters.realsize import write_random_adapter

    return write_random_adapter("toto", path)


def _record(st: Store, out: dict) -> None:
    for p in out.get("picks", []):
        st.set_pick(p["model"], p["symbol"], p)
    st.put_comparisons(out.get("comparisons", []))


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("decide")
    data = tmp / "data"
    write_csv(data / "AAA.csv", n=300, seed=11)
    ws, hp = tmp / "ws", tmp / "hp"
    with Store.open(ws, hyperparams_dir=hp) as st:
        ad = _adapter(ws / "runs" / "r1" / "adapter")
        st.log_run("toto", "AAA", {"horizon": 8, "preset": "tiny"}, {"val_mae_pct": 1.0}, checkpoint=str(ad))
    for h in (4, 8):  # compare reads the store read-only, like a worker
        out = compare.run(spec("compare", ["AAA"], None, models=["toto"], horizon=h, **PARAMS),
                          make_ctx(tmp, data, "compare", ws=ws))
        with Store.open(ws, hyperparams_dir=hp) as st:
            _record(st, out)
    out = validate.run(spec("validate", ["AAA"], "naive", horizon=8, context=32, val_windows=12, test_windows=10,
                            stride=2), make_ctx(tmp, data, "validate", ws=ws))
    with Store.open(ws, hyperparams_dir=hp) as st:
        _record(st, out)
    return {"tmp": tmp, "data": data, "ws": ws, "hp": hp, "adapter": ad}


def test_comparisons_at_two_horizons_coexist_and_promote_exactly_the_row(decided: dict) -> None:
    ws, hp = decided["ws"], decided["hp"]
    with Store.open(ws, hyperparams_dir=hp) as st:
        rows = {(r.horizon, r.model): r for r in st.comparisons("AAA")}
        assert set(rows) == {(4, "naive"), (4, "toto"), (8, "naive"), (8, "toto")}
        row = rows[(4, "toto")]  # the "earlier" row, not the latest one
        assert row.adapter == str(decided["adapter"]) and row.windows.count >= 5 and row.val_windows.count >= 5
        path = st.promote("toto", "AAA", "comparison", horizon=4, preset="tiny", by="test")
    doc = json.loads(path.read_text())
    assert (doc["horizon"], doc["preset"], doc["context"], doc["seed"]) == (4, "tiny", 32, row.seed)
    assert doc["config"] == row.config
    assert doc["test"]["mae_pct"] == row.test.mae_pct and doc["validation"]["mae_pct"] == row.validation.mae_pct
    assert doc["windows"]["test"] == row.windows.to_doc()
    assert doc["naive"]["test"]["mae_pct"] == rows[(4, "naive")].test.mae_pct
    assert doc["naive"]["dm"]["test"]["stat"] == row.test.dm_stat
    copied = hp / "toto" / doc["adapter"]["dir"]
    for f in decided["adapter"].iterdir():  # byte for byte, and hashed in the document
        assert (copied / f.name).read_bytes() == f.read_bytes()
    assert set(doc["adapter"]["files"]) == {f.name for f in decided["adapter"].iterdir()}


def test_forecast_api_reproduces_the_promoted_test_mae_after_the_workspace_is_gone(decided: dict) -> None:
    from engine.serve import load_promoted

    hp, data = decided["hp"], decided["data"]
    path = hp / "toto" / "AAA.json"
    if not path.exists():
        test_comparisons_at_two_horizons_coexist_and_promote_exactly_the_row(decided)
    promoted = json.loads(path.read_text())
    gone = decided["tmp"] / "ws-gone"
    shutil.copytree(decided["ws"], gone)  # keep the fixture's workspace for the other tests
    shutil.rmtree(decided["ws"])
    try:
        m = load_promoted("toto", "AAA", hp)
        got = m.score(data / "AAA.csv", "test")
        assert abs(got.mae_pct - promoted["test"]["mae_pct"]) < 1e-9
        assert abs(m.score(data / "AAA.csv", "val").mae_pct - promoted["validation"]["mae_pct"]) < 1e-9
        fc = m.forecast(data / "AAA.csv")
    finally:
        shutil.copytree(gone, decided["ws"])
    last = pd.read_csv(data / "AAA.csv")["timestamp"].iloc[-1]
    assert len(fc) == 4 and (fc["timestamp"] > pd.Timestamp(last)).all()
    assert (fc["timestamp"].dt.dayofweek < 5).all() and fc["timestamp"].is_monotonic_increasing
    assert np.all(fc["q10"] <= fc["q50"]) and np.all(fc["q50"] <= fc["q90"])
    # the adapter matters: an altered file is refused rather than silently used
    f = next((hp / "toto" / promoted["adapter"]["dir"]).glob("*.safetensors"))
    raw = f.read_bytes()
    f.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    try:
        with pytest.raises(ValueError, match="does not match its sha256"):
            load_promoted("toto", "AAA", hp)
    finally:
        f.write_bytes(raw)


_CLI_PROBE = """import json, sys
from console.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("peft", "transformers", "lightning", "torchmetrics", "textual", "engine.client",
                           "scipy.stats", "sympy", "huggingface_hub", "yaml", "gluonts.model", "toolz") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy}), file=sys.stderr)
"""


def test_forecast_command_reads_only_the_promoted_files_and_imports_only_what_it_needs(decided: dict) -> None:
    """`forecast --json` with no workspace: H rows after the CSV's last row, the API's numbers, no
    engine service started, and none of peft/transformers/lightning/Textual, scipy.stats, sympy or
    huggingface_hub imported (its start-up cost)."""
    import os
    import subprocess
    import sys

    from engine.serve import load_promoted

    hp, data, tmp = decided["hp"], decided["data"], decided["tmp"]
    if not (hp / "toto" / "AAA.json").exists():
        test_comparisons_at_two_horizons_coexist_and_promote_exactly_the_row(decided)
    nows = tmp / "no-workspace"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", _CLI_PROBE, "--workspace", str(nows), "--data", str(data),
                          "--hyperparams", str(hp), "forecast", "--stocks", "AAA", "--model", "toto", "--json"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    assert probe == {"rc": 0, "heavy": []}, out.stderr[-2000:]
    assert not nows.exists()  # read-only: no workspace, no engine service
    [res] = json.loads(out.stdout)
    m = load_promoted("toto", "AAA", hp)
    want = m.forecast(data / "AAA.csv")
    assert (res["model"], res["horizon"]) == ("toto", m.horizon) and len(res["rows"]) == m.horizon
    assert [r["timestamp"] for r in res["rows"]] == [t.strftime("%Y-%m-%d") for t in want["timestamp"]]
    assert pd.Timestamp(res["rows"][0]["timestamp"]) > pd.Timestamp(pd.read_csv(data / "AAA.csv")["timestamp"].iloc[-1])
    for col in ("point", "q10", "q50", "q90"):
        assert [r[col] for r in res["rows"]] == want[col].tolist()
    # as the program (it ends without the interpreter's teardown): the same output, all of it, exit 0
    prog = subprocess.run([sys.executable, "-m", "console.cli", "--workspace", str(nows), "--data", str(data),
                           "--hyperparams", str(hp), "forecast", "--stocks", "AAA", "--model", "toto", "--json"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert prog.returncode == 0 and json.loads(prog.stdout) == json.loads(out.stdout), prog.stderr[-2000:]


def test_forecast_all_skips_symbols_with_nothing_promoted_but_a_named_one_is_an_error(
        decided: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from console.cli import main

    hp, tmp = decided["hp"], decided["tmp"]
    if not (hp / "toto" / "AAA.json").exists():
        test_comparisons_at_two_horizons_coexist_and_promote_exactly_the_row(decided)
    data2 = tmp / "data2"
    data2.mkdir(exist_ok=True)
    shutil.copy(decided["data"] / "AAA.csv", data2 / "AAA.csv")
    write_csv(data2 / "BBB.csv", n=300, seed=3)
    common = ["--workspace", str(tmp / "no-workspace"), "--data", str(data2), "--hyperparams", str(hp), "forecast"]
    assert main([*common, "--all", "--model", "toto", "--json"]) == 0
    out = capsys.readouterr()
    assert [r["symbol"] for r in json.loads(out.out)] == ["AAA"]
    assert "no promoted config for toto/BBB" in out.err and "skipped" in out.err
    assert main([*common, "--stocks", "BBB", "--model", "toto"]) == 2
    err = capsys.readouterr().err
    assert "no promoted config for toto/BBB" in err and "skipped" not in err


def test_naive_is_a_decision_and_load_winner_ranks_comparable_ones(decided: dict) -> None:
    from engine.serve import load_promoted

    ws, hp = decided["ws"], decided["hp"]
    with Store.open(ws, hyperparams_dir=hp) as st:
        pick = st.pick("naive", "AAA", 8)
        assert pick is not None and pick.config["method"] in ("persistence", "drift", "seasonal")
        st.promote("naive", "AAA", horizon=8)  # from the naive pick
        st.promote("toto", "AAA", "comparison", horizon=8)
        st.promote("naive", "AAA", "comparison", horizon=8)  # the naive row of the same comparison
        toto8 = st.comparison("AAA", 8, "toto")
        naive8 = st.comparison("AAA", 8, "naive")
        with pytest.raises(StoreError, match="no comparison row for toto/AAA at h=16"):
            st.promote("toto", "AAA", "comparison", horizon=16)
    assert load_best_config("naive", "AAA", hp)["config"]["method"] == "persistence"
    win = load_winner("AAA", 8, hp)
    best = min((toto8, naive8), key=lambda r: r.validation.mae_pct)
    assert win["model"] == best.model
    with pytest.raises(FileNotFoundError, match="no promoted config for AAA at horizon 16"):
        load_winner("AAA", 16, hp)
    m = load_promoted("naive", "AAA", hp)
    assert abs(m.score(decided["data"] / "AAA.csv").mae_pct - naive8.test.mae_pct) < 1e-9
    fc = m.forecast(decided["data"] / "AAA.csv")
    assert len(fc) == 8 and np.allclose(fc["point"], fc["q50"])
