"""The train task end to end (real CSV, real events, real files) and exact resume after interruption."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.events import EventWriter, read_events
from engine.forecasters.registry import load_forecaster
from engine.forecasters.training import TrainConfig, train, windows_from_close
from engine.jobs import JobSpec
from engine.tasks import train as train_task
from engine.tasks.context import TaskContext
from tests.helpers import write_cycle_csv

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


def _ctx(ws: Path, spec: JobSpec, data: Path) -> TaskContext:
    jd = ws / "jobs" / spec.id
    jd.mkdir(parents=True)
    return TaskContext(job_id=spec.id, workspace=ws, job_dir=jd, events=EventWriter(jd / "events.jsonl", spec.id),
                       data_dirs=[data])


def test_train_task_writes_run_artifacts_and_a_loadable_adapter(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_cycle_csv(data / "SYN.csv")
    write_cycle_csv(data / "TWO.csv")
    params = dict(epochs=2, context=64, horizon=16, max_steps_per_epoch=3, seed=1, lr=3e-3, mae_samples=4)
    spec = JobSpec.create("train", ["SYN", "TWO"], "chronos2", params=params)
    ctx = _ctx(tmp_path / "ws", spec, data)
    out = train_task.run(spec, ctx)
    run, second = out["runs"]
    assert run["model"] == "chronos2" and run["symbol"] == "SYN" and run["seed"] == 1
    m = run["metrics"]
    for k in ("val_loss", "val_mae_pct", "val_naive_mae_pct"):
        assert np.isfinite(m[k])
    run_dir = Path(run["extra"]["run_dir"])
    for f in ("config.json", "metrics.json", "curve.jsonl", "adapter/adapter_meta.json"):
        assert (run_dir / f).exists(), f
    assert list(run_dir.glob("checkpoint/state-*/tensors.safetensors"))  # data-only checkpoint, no pickle
    assert not list(run_dir.rglob("*.pt"))
    curve = [json.loads(x) for x in (run_dir / "curve.jsonl").read_text().splitlines()]
    assert sum(1 for c in curve if c.get("val") is not None) == 2  # one validation point per epoch
    evs = read_events(ctx.job_dir / "events.jsonl").events
    types = {e["type"] for e in evs}
    assert {"loss", "progress", "log", "artifact", "metric"} <= types
    # each loss event names its symbol and run: two curves, each from its own first step
    by_run: dict[tuple[str, str], list[int]] = {}
    for e in evs:
        if e["type"] == "loss":
            by_run.setdefault((e["symbol"], e["run"]), []).append(e["step"])
    assert list(by_run) == [("SYN", run["extra"]["run_id"]), ("TWO", second["extra"]["run_id"])]
    assert all(steps == sorted(steps) and steps[0] <= 3 for steps in by_run.values())
    # progress is the job's, in symbols, and says where the job is
    prog = [e for e in evs if e["type"] == "progress"]
    assert [p["done"] for p in prog] == sorted(p["done"] for p in prog) and prog[-1]["total"] == 2
    stages = [(p["stage"], p["symbol"], p["symbol_i"]) for p in prog]
    assert stages[0] == ("planning", "SYN", 1) and stages[-1] == ("scoring validation", "TWO", 2)
    assert ("training", "TWO", 2) in stages and all(p["epoch_n"] == 2 for p in prog if p["stage"] == "training")
    metrics = {e["name"]: e["value"] for e in evs if e["type"] == "metric"}
    assert metrics["SYN.best_epoch"] == m["best_epoch"] and metrics["TWO.stopped_early"] in (0.0, 1.0)
    # validation/compare load the adapter the same way
    fc = load_forecaster("chronos2", "tiny", adapter=run["checkpoint"])
    assert fc.finetune == "full" == run["hyperparams"]["finetune"]  # the tiny preset trains every weight
    assert run["hyperparams"]["context"] == 64 and run["hyperparams"]["horizon"] == 16


def test_bad_params_fail_before_any_work(tmp_path: Path) -> None:
    """JobSpec.create refuses these; a hand-written spec that skipped it is refused by the task too."""
    def unchecked(params: dict[str, object]) -> JobSpec:
        return JobSpec.from_dict({**JobSpec.create("train", ["SYN"], "toto").to_dict(), "params": params})

    spec = unchecked({"lora_rank": 0})
    ctx = _ctx(tmp_path / "ws", spec, tmp_path)
    with pytest.raises(ValueError, match="'lora_rank' must be greater than or equal to 1"):
        train_task.run(spec, ctx)
    spec = unchecked({"loss": "cosine"})
    with pytest.raises(ValueError, match="'loss' must be 'native', 'huber'"):
        train_task.run(spec, _ctx(tmp_path / "ws2", spec, tmp_path))
    assert not (tmp_path / "ws" / "runs").exists()


@pytest.mark.parametrize("model", ["chronos2", "toto"])
def test_interrupted_then_resumed_equals_uninterrupted(model: str, tmp_path: Path) -> None:
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 500))
    tr = windows_from_close(close, 0, 380, 64, 16, stride=4)
    va = windows_from_close(close, 380, 440, 64, 16, span="val", train_end=380)
    cfg = TrainConfig(epochs=3, lr=3e-3, batch_size=8, seed=5, max_steps_per_epoch=4, loss="huber")

    def fresh() -> object:
        fc = load_forecaster(model, "tiny")
        fc.prepare_finetune("lora", rank=4, seed=5)
        return fc

    a = fresh()
    ra = train(a, tr, va, cfg, ckpt_dir=tmp_path / "a")
    calls = {"n": 0}

    def cancel_after_6() -> bool:  # stops mid-epoch 1, after 6 steps
        # checked before each of the 4 steps and each of the 6 validation batches of an epoch
        calls["n"] += 1
        return calls["n"] > 4 + 6 + 2

    b = fresh()
    rb1 = train(b, tr, va, cfg, ckpt_dir=tmp_path / "b", cancelled=cancel_after_6)
    assert rb1.cancelled and rb1.steps == 6
    c = fresh()  # a new process would start from scratch: new model, resume from the checkpoint
    rc = train(c, tr, va, cfg, ckpt_dir=tmp_path / "b", resume=True)
    assert rc.steps == ra.steps == 12
    sa, sc = a.trainable_state(), c.trainable_state()
    assert sa.keys() == sc.keys() and all(torch.equal(sa[k], sc[k]) for k in sa)
    assert rc.val_losses == ra.val_losses


_WORKER_PROBE = """import json, sys
from engine.worker import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("peft", "transformers", "scipy", "huggingface_hub") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy}), file=sys.stderr)
"""


def test_a_lora_train_job_in_a_fresh_worker_never_imports_peft_or_transformers(tmp_path: Path) -> None:
    """LoRA on toto's linears is engine.forecasters.lora_inject's (peft's layer, bit for bit; see
    tests/test_forecasters_models.py): a train job prepares, steps, validates and saves its adapter
    without peft's import (transformers, scipy: ~5 s of CPU per job), and the adapter loads."""
    import os
    import subprocess
    import sys

    from engine import paths
    from engine.jobs import JobDir

    data = tmp_path / "data"
    write_cycle_csv(data / "SYN.csv")
    spec = JobSpec.create("train", ["SYN"], "toto", params=dict(finetune="lora", epochs=1, max_steps_per_epoch=1,
                                                                 context=64, horizon=16, mae_samples=2))
    job_dir = tmp_path / "ws" / "jobs" / spec.id
    job_dir.mkdir(parents=True)
    spec.write(job_dir)
    env = {**os.environ, paths.ENV_DATA: str(data), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", _WORKER_PROBE, str(job_dir)], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    assert probe == {"rc": 0, "heavy": []}, out.stderr[-2000:]
    result = next(e for e in read_events(JobDir(job_dir).events).events if e["type"] == "result")
    [run] = result["runs"]
    assert run["hyperparams"]["finetune"] == "lora"
    fc = load_forecaster("toto", "tiny", adapter=run["checkpoint"])
    assert fc.finetune == "lora" and any(type(m).__name__ == "LoraLinear" for m in fc.adapt_root().modules())
