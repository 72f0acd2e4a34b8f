"""`--preset pretrained --source DIR`: the path users run, end to end, on real-size models.

Each model is written at its published size (Toto ≈151M, Chronos-2 ≈120M, Kronos-small ≈25M plus
its tokenizer) with random weights, in the layout its package loads (`engine.forecasters.realsize`);
then the real commands (in this process; their jobs in real engine workers) train LoRA on it for two steps, validate,
compare against naive, promote the pick and forecast with it (the promoted adapter on the folder's
base weights, not the base alone). The hub is offline (HF_HUB_OFFLINE=1, an empty HF cache) throughout, so nothing here can
succeed by downloading, and a hub id that is not cached must fail at once naming the download
command. Short contexts, few windows and few samples keep the three models within a few minutes
on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from console.cli import main
from engine import evaluation as ev
from engine import paths
from engine.forecasters.lora import ADAPTER_WEIGHTS
from engine.forecasters.realsize import write_checkpoint
from engine.serve import load_promoted
from tests.helpers import write_cycle_csv

pytestmark = pytest.mark.slow

#: Toto-Open-Base's patches are 64 steps, so its horizon is 64; the others keep 16 to stay fast.
SHAPE = {"toto": ("64", "64"), "chronos2": ("64", "16"), "kronos": ("64", "16")}
#: Val and test spans of horizon + 3 rows: 4 windows each (stride 1) wherever a command scores a span, so
#: the real-size models forecast a few windows (train's validation MAE% would otherwise take 32-48).
SPANS = {m: ("--val-rows", str(int(h) + 3), "--test-rows", str(int(h) + 3)) for m, (_, h) in SHAPE.items()}
#: One draw group per model in validate (the search itself is tested on the tiny presets).
GRID = {"toto": (), "chronos2": ("--contexts", "64"), "kronos": ("--temperature", "1.0", "--top-p", "0.9")}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("weights")
    return {m: write_checkpoint(m, root / m) for m in SHAPE}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    data = tmp_path / "data"
    write_cycle_csv(data / "SYN.csv")
    e = {paths.ENV_WORKSPACE: str(tmp_path / "ws"), paths.ENV_DATA: str(data),
         paths.ENV_HYPERPARAMS: str(tmp_path / "hyperparams"), "HF_HUB_OFFLINE": "1",
         "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **e}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run one command in this process (its jobs run in real worker processes); its stdout."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 0, f"{' '.join(args[:3])} failed:\n{out[-2000:]}\n{err[-3000:]}"
    return out


def test_train_validate_compare_promote_from_a_weights_folder(weights: dict[str, dict[str, str]], env: dict[str, str],
                                                               capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The three models one after the other in one workspace, so that one engine service and its warm
    worker serve every command (a service per model started a new warm worker, importing torch and
    the model packages again, for each model's validate); each model has its own run, pick,
    comparison rows and promoted file, and every failure names the model in its command line."""
    monkeypatch.setenv("FORECAST_ENGINE_IDLE_S", "120")  # over the in-process checks between commands
    for model in SHAPE:
        _train_validate_compare_promote(model, weights[model], env, capsys)


def _train_validate_compare_promote(model: str, w: dict[str, str], env: dict[str, str],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    ctx, hor = SHAPE[model]
    src = ["--source", w["source"]] + (["--tokenizer", w["tokenizer"]] if "tokenizer" in w else [])
    # a relative spelling of the folder must be recorded as the absolute directory it names
    rel = os.path.relpath(w["source"])
    src[1] = rel
    out = _cli(capsys, "train", "--stocks", "SYN", "--model", model, "--preset", "pretrained", *src, "--epochs", "1",
             "--max-steps-per-epoch", "2", "--batch-size", "2", "--context", ctx, "--horizon", hor,
             "--mae-samples", "1", *SPANS[model])
    assert "lora rank" in out, out  # LoRA is the pretrained default
    ws = Path(env[paths.ENV_WORKSPACE])
    (run_dir,) = [d for d in (ws / "runs").iterdir() if d.name.startswith(f"{model}-pretrained-SYN-")]
    meta = json.loads((run_dir / "adapter" / "adapter_meta.json").read_text())
    assert meta["preset"] == "pretrained" and meta["finetune"] == "lora"
    assert meta["source"] == w["source"]  # absolute: validate/compare/forecast find the same base
    assert meta.get("tokenizer") == w.get("tokenizer")
    curve = [json.loads(x) for x in (run_dir / "curve.jsonl").read_text().splitlines()]
    assert any("val" in c for c in curve)

    # validate loads the adapter, which names its base weights: no --source needed
    out = _cli(capsys, "validate", "--stocks", "SYN", "--model", model, "--preset", "pretrained", "--context", ctx,
             "--horizon", hor, "--val-windows", "4", "--test-windows", "4", "--num-samples", "2", *GRID[model],
             *SPANS[model], "--json")
    (pick,) = json.loads(out)[0]["picks"]
    assert pick["adapter"] == str(run_dir / "adapter") and pick["preset"] == "pretrained"
    assert pick["validation"]["mae_pct"] > 0 and pick["test"]["mae_pct"] > 0

    out = _cli(capsys, "compare", "--stocks", "SYN", "--model", model, "--preset", "pretrained", "--context", ctx,
             "--horizon", hor, "--val-windows", "4", "--test-windows", "4", "--top-k", "0", *SPANS[model], "--json")
    rows = json.loads(out)["comparisons"]
    assert {row["model"] for row in rows} >= {model, "naive"}, rows

    _cli(capsys, "promote", "--model", model, "--symbol", "SYN")
    hp = Path(env[paths.ENV_HYPERPARAMS])
    handoff = json.loads((hp / model / "SYN.json").read_text())
    assert handoff["config"] == pick["config"], handoff

    # forecast uses the promoted adapter on the folder's base weights
    (res,) = json.loads(_cli(capsys, "forecast", "--stocks", "SYN", "--model", model, "--json"))
    assert (res["model"], res["preset"], len(res["rows"])) == (model, "pretrained", int(hor)), res
    promoted = load_promoted(model, "SYN", hp)
    adapter = promoted.adapter_dir()  # the promoted copy, checked against its recorded hashes
    assert adapter is not None and adapter.parent.parent == hp / model
    trained = load_file(str(run_dir / "adapter" / ADAPTER_WEIGHTS))
    assert load_file(str(adapter / ADAPTER_WEIGHTS)).keys() == trained.keys()
    loaded = promoted.bank().forecaster.trainable_state()  # the model forecasting carries that LoRA state
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert [r["point"] for r in res["rows"]] == promoted.forecast(Path(env[paths.ENV_DATA]) / "SYN.csv")[
        "point"].tolist()
    base = dataclasses.replace(promoted, doc={k: v for k, v in promoted.doc.items() if k != "adapter"},
                               _bank=ev.ModelCache(preset="pretrained", weights=w).bank(
                                   model, method=promoted.config.get("method")))
    assert base.forecast(Path(env[paths.ENV_DATA]) / "SYN.csv")["point"].tolist() != [r["point"] for r in res["rows"]]


@pytest.mark.parametrize("model,hub_id", [("toto", "Datadog/Toto-Open-Base-1.0"),
                                          ("chronos2", "amazon/chronos-2"),
                                          ("kronos", "NeoQuasar/Kronos-small")])
def test_missing_hub_weights_fail_at_once_naming_the_download(model: str, hub_id: str, env: dict[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """HF_HUB_OFFLINE with an empty cache: refused before queueing, naming the id and the fetch command."""
    assert main(["train", "--stocks", "SYN", "--model", model, "--preset", "pretrained", "--context", "64",
                 "--horizon", "64"]) == 2
    err = capsys.readouterr().err
    assert f"hf download {hub_id}" in err and "offline" in err and "Traceback" not in err, err
    assert not (Path(env[paths.ENV_WORKSPACE]) / "jobs").exists() or not any(
        (Path(env[paths.ENV_WORKSPACE]) / "jobs").glob("*/spec.json"))


def test_a_folder_of_another_model_or_a_missing_folder_is_refused(weights: dict[str, dict[str, str]],
                                                                   tmp_path: Path) -> None:
    from engine.forecasters.hub import ModelLoadError
    from engine.forecasters.registry import load_forecaster

    with pytest.raises(ModelLoadError, match="chronos2: cannot load weights from"):
        load_forecaster("chronos2", "pretrained", source=weights["toto"]["source"])
    with pytest.raises(ModelLoadError, match="has no model.safetensors; it is not a toto checkpoint"):
        load_forecaster("toto", "pretrained", source=str(tmp_path))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_forecaster("toto", "pretrained", source=str(Path(weights["toto"]["source"]) / "missing"))
