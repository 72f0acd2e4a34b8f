"""Issue 5's done-when on shipped data: a tiny model fine-tuned by the real train task beats naive
persistence on the validation span of a symbol with learnable structure, and never reads the test span.

GOOG (engine/data/synth.py: "seasonal", a 21-bar cycle in the log price) at horizon 16: naive
persistence val MAE% 8.73 on the validation span. chronos2 tiny with the tiny-preset defaults (full
fine-tuning, native quantile loss, lr 2e-3, context 128) reached ~5.2 after 10 epochs (~25-45 s on one
thread). The test span of the CSV is multiplied by 3 before training: if any of it leaked into training,
validation or early stopping, the poisoned run would differ from the clean one.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import engine.data as data
from engine import metrics, paths
from engine.events import EventWriter
from engine.forecasters.registry import load_forecaster
from engine.jobs import JobSpec
from engine.tasks import train as train_task
from engine.tasks.context import TaskContext

warnings.filterwarnings("ignore")
torch.set_num_threads(1)

SYMBOL = "GOOG"
HORIZON = 16
SHIPPED = paths.PROJECT_ROOT / "trainingdata" / f"{SYMBOL}.csv"


def _copy(dst: Path, *, poison_test_span: bool) -> tuple[Path, data.Spans]:
    """GOOG.csv into `dst/`; with `poison_test_span` the test-span prices are tripled (bars stay valid)."""
    dst.mkdir(parents=True)
    frame = pd.read_csv(SHIPPED, dtype=str)
    spans = data.split_spans(len(frame), HORIZON)  # the split the train task makes at this horizon
    if poison_test_span:
        rows = slice(spans.val_end, spans.n_rows)
        for col in ("open", "high", "low", "close"):
            frame.loc[frame.index[rows], col] = [f"{3 * float(v):.4f}" for v in frame[col].iloc[rows]]
    frame.to_csv(dst / f"{SYMBOL}.csv", index=False, lineterminator="\n")
    return dst, spans


def _train(ws: Path, data_dir: Path, **params: Any) -> dict[str, Any]:
    spec = JobSpec.create("train", [SYMBOL], "chronos2", params={"horizon": HORIZON, "seed": 0, **params})
    jd = ws / "jobs" / spec.id
    jd.mkdir(parents=True)
    ctx = TaskContext(job_id=spec.id, workspace=ws, job_dir=jd, events=EventWriter(jd / "events.jsonl", spec.id),
                      data_dirs=[data_dir])
    (run,) = train_task.run(spec, ctx)["runs"]
    return run


@pytest.mark.slow
def test_tiny_chronos2_beats_persistence_on_goog_validation_span(tmp_path: Path) -> None:
    data_dir, spans = _copy(tmp_path / "data", poison_test_span=True)
    run = _train(tmp_path / "ws", data_dir, epochs=10)
    hp, m = run["hyperparams"], run["metrics"]
    # the tiny-preset defaults did the work (only horizon, epochs and seed were given)
    assert (hp["finetune"], hp["loss"], hp["context"], hp["horizon"]) == ("full", "native", 128, HORIZON)
    assert run["extra"]["spans"] == spans.to_dict()
    # the task's own score (the validate default windows, same windows for both)
    assert m["val_mae_pct"] < 0.85 * m["val_naive_mae_pct"], m

    # every validation window, scored independently through the adapter the task saved
    series = data.load_symbol(SYMBOL, [data_dir])
    val = data.make_windows(series, spans, "val", hp["context"], HORIZON)
    assert val.n == run["extra"]["val_windows"]["count"] and val.origins.max() + HORIZON <= spans.val_end
    fc = load_forecaster("chronos2", "tiny", adapter=run["checkpoint"])
    point = np.median(fc.forecast(val, num_samples=16, seed=0).samples, axis=1)
    naive = np.repeat(val.last_close[:, None], HORIZON, axis=1)
    model_pct, naive_pct = metrics.mae_pct(val.targets, point), metrics.mae_pct(val.targets, naive)
    assert model_pct < 0.85 * naive_pct, (model_pct, naive_pct)


def test_training_never_reads_the_test_span(tmp_path: Path) -> None:
    """Same run on clean and test-span-poisoned data: identical weights, losses and val scores."""
    runs = []
    for name, poison in (("clean", False), ("poisoned", True)):
        d, _ = _copy(tmp_path / name, poison_test_span=poison)
        runs.append(_train(tmp_path / f"ws-{name}", d, epochs=2, max_steps_per_epoch=3, mae_samples=4))
    a, b = runs
    def scores(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run["metrics"].items() if k != "steps_per_s"}  # a timing

    assert scores(a) == scores(b) and np.isfinite(scores(a)["val_mae_pct"])
    assert a["hyperparams"] == b["hyperparams"]  # includes the difficulty measured on the train span
    sa = load_forecaster("chronos2", "tiny", adapter=a["checkpoint"]).trainable_state()
    sb = load_forecaster("chronos2", "tiny", adapter=b["checkpoint"]).trainable_state()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
