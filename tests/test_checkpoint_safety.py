"""No code from files: every checkpoint path the code loads refuses a planted pickle, and resume falls
back to the newest checkpoint generation that loads."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.forecasters import checkpoints as ck
from engine.forecasters.hub import ModelLoadError, resolve_weights
from engine.forecasters.lora import ADAPTER_WEIGHTS, AdapterError
from engine.forecasters.registry import load_forecaster
from engine.forecasters.training import TrainConfig, train, windows_from_close


class _Boom:
    """Unpickling this creates a marker file: proof that code from the file ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Boom(str(marker))))
    torch.save({"x": _Boom(str(marker))}, path.with_suffix(".pt"))


def _setup() -> tuple[object, object, TrainConfig]:
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 400))
    tr = windows_from_close(close, 0, 300, 64, 16, stride=8)
    va = windows_from_close(close, 300, 360, 64, 16, span="val", train_end=300)
    return tr, va, TrainConfig(epochs=3, lr=3e-3, batch_size=8, seed=5, max_steps_per_epoch=2, loss="huber",
                               val_batches=1)


def _fresh() -> object:
    fc = load_forecaster("chronos2", "tiny")
    fc.prepare_finetune("lora", rank=4, seed=5)
    return fc


def test_round_trip_keeps_types_and_tensors(tmp_path: Path) -> None:
    st = {"a": torch.arange(4.0), "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "groups": [{"betas": (0.9, 0.99)}]},
          "inf": float("inf"), "none": None, "s": "x"}
    g = ck.save_state(tmp_path, st)
    back = ck.load_state(g)
    assert torch.equal(back["a"], st["a"]) and back["opt"]["groups"][0]["betas"] == (0.9, 0.99)
    assert list(back["opt"]["state"]) == [0] and back["inf"] == float("inf") and back["none"] is None
    for _ in range(3):
        ck.save_state(tmp_path, st)
    assert [p.name for p in ck.generations(tmp_path)] == ["state-000004", "state-000003"]  # KEEP newest 2
    with pytest.raises(TypeError, match="not data"):
        ck.save_state(tmp_path, {"f": object()})
    assert len(ck.generations(tmp_path)) == 2 and not list(tmp_path.glob(".state-*"))


def test_planted_pickles_in_every_checkpoint_file_are_refused_and_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    tr, va, cfg = _setup()
    ckpt = tmp_path / "ckpt"
    train(_fresh(), tr, va, TrainConfig(**{**cfg.__dict__, "epochs": 1}), ckpt_dir=ckpt)
    (gen,) = ck.generations(ckpt)
    # A legacy pickle beside the checkpoints is never read.
    _plant(ckpt / "trainer_state.pt", marker)
    for name in (ck.TENSORS, ck.STATE_JSON):
        bad = tmp_path / "bad" / name
        shutil.copytree(gen, bad.parent, dirs_exist_ok=True)
        _plant(bad, marker)
        with pytest.raises(ck.CheckpointError, match="not a"):
            ck.load_state(bad.parent)
    # Resume with only planted files: a clear error, nothing ran, no step was taken.
    for name in (ck.TENSORS, ck.STATE_JSON):
        _plant(gen / name, marker)
    with pytest.raises(ck.CheckpointError, match=r"no checkpoint loads.*trainer_state.pt ignored: pickle"):
        train(_fresh(), tr, va, cfg, ckpt_dir=ckpt, resume=True)
    # The adapter file (safetensors) refuses a pickle too.
    fc = _fresh()
    fc.save_adapter(tmp_path / "adapter")
    _plant(tmp_path / "adapter" / ADAPTER_WEIGHTS, marker)
    with pytest.raises((AdapterError, Exception), match="(?i)safetensor|header|invalid"):
        _fresh().load_adapter(tmp_path / "adapter")
    assert not marker.exists()


def test_weights_directory_with_only_pickle_files_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "weights"
    _plant(d / "pytorch_model.bin", tmp_path / "PWNED")
    (d / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="pickle"):
        resolve_weights("kronos", d, required=("config.json",))
    assert not (tmp_path / "PWNED").exists()


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(tmp_path: Path) -> None:
    tr, va, cfg = _setup()
    a = _fresh()
    ra = train(a, tr, va, cfg, ckpt_dir=tmp_path / "a")
    calls = {"n": 0}

    def cancel_in_epoch_2() -> bool:  # 2 steps + 1 val batch per epoch: stops after 5 steps
        calls["n"] += 1
        return calls["n"] > 3 + 3 + 1

    b = _fresh()
    rb = train(b, tr, va, cfg, ckpt_dir=tmp_path / "b", cancelled=cancel_in_epoch_2)
    assert rb.cancelled
    newest, older = ck.generations(tmp_path / "b")
    (newest / ck.TENSORS).write_bytes((newest / ck.TENSORS).read_bytes()[:40])  # torn / damaged
    logs: list[str] = []

    class _Ev:
        def log(self, msg: str) -> None:
            logs.append(msg)

        def step(self, *a: object) -> None: ...

        def epoch(self, *a: object) -> None: ...

        def checkpoint(self, *a: object) -> None: ...

    c = _fresh()
    rc = train(c, tr, va, cfg, ckpt_dir=tmp_path / "b", resume=True, events=_Ev())  # type: ignore[arg-type]
    assert any("skipped" in m and newest.name in m for m in logs), logs
    assert any(f"resumed from {older}" in m for m in logs), logs
    assert rc.steps == ra.steps and rc.val_losses == ra.val_losses
    sa, sc = a.trainable_state(), c.trainable_state()
    assert all(torch.equal(sa[k], sc[k]) for k in sa)
