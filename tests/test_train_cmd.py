"""`forecast-console train`: submit-time checks, and the shared submit/follow path of `run train`.

Real CLI processes, real engines, real worker subprocesses training the tiny chronos2 preset on a
small CSV. Pins the QA defects: --detach never started the job, a console owning the workspace made
train fail, Ctrl-C said "interrupted" without saying the job goes on, impossible settings were
accepted and failed later, and a cancelled train job was killed instead of stopping at a safe point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from console.cli import main
from engine import paths
from store import Store
from tests.helpers import cli_beside_console, write_cycle_csv

ENTRY = "import sys; from console.cli import main; sys.exit(main(sys.argv[1:]))"
SMALL = ("--model", "chronos2", "--context", "32", "--horizon", "16")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SYN (good, 420 rows) and JUNK (binary) CSVs, an empty workspace, an empty Hugging Face cache."""
    data = tmp_path / "data"
    data.mkdir()
    write_cycle_csv(data / "SYN.csv")
    (data / "JUNK.csv").write_bytes(b"\x00\x01binary\xff" * 50)
    e = {paths.ENV_WORKSPACE: str(tmp_path / "ws"), paths.ENV_DATA: str(data), "HF_HUB_OFFLINE": "1",
         "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **e}


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _ws(env: dict[str, str]) -> Path:
    return Path(env[paths.ENV_WORKSPACE])


def _nothing_queued(ws: Path) -> bool:
    return not (ws / "jobs").exists() or not any((ws / "jobs").glob("*/spec.json"))


def _kill_job(ws: Path, job_id: str) -> None:
    info = json.loads((ws / "jobs" / job_id / "pid.json").read_text())
    try:
        os.killpg(info["pgid"], signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- submit-time checks -------------------------------------------------------------------------
def test_impossible_settings_and_bad_data_are_refused_before_queueing(env: dict[str, str],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ws = _ws(env)
    assert main(["train", "--stocks", "SYN", *SMALL[:2], "--horizon", "100000"]) == 2
    err = capsys.readouterr().err
    assert "SYN: cannot train chronos2 (420 rows)" in err and "horizon" in err and "Traceback" not in err
    assert main(["train", "--stocks", "JUNK", "--model", "toto"]) == 2
    assert "JUNK.csv" in capsys.readouterr().err
    # the plan must leave windows in the train span the job will actually use (not the planner's 70%)
    assert main(["train", "--stocks", "SYN", "--model", "toto", "--preset", "pretrained"]) == 2
    assert "leave 0 training and 32 validation windows in 420 rows" in capsys.readouterr().err
    assert main(["train", "--stocks", "SYN", "--model", "toto", "--preset", "pretrained", "--context", "64",
                 "--source", str(ws.parent / "no-such-dir")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # a usage error: argparse checks each flag against the model
        main(["train", "--stocks", "SYN", *SMALL, "--lr", "5"])
    assert exit_.value.code == 2 and "'lr' must be less than 1" in capsys.readouterr().err
    assert _nothing_queued(ws)


def test_pretrained_without_weights_offline_is_refused_at_submit(env: dict[str, str]) -> None:
    r = _cli(env, "train", "--stocks", "SYN", "--model", "kronos", "--preset", "pretrained")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "NeoQuasar/Kronos-small" in r.stderr and "hf download" in r.stderr
    assert "torch" not in r.stderr and _nothing_queued(_ws(env))


# ---- the shared submit/follow path --------------------------------------------------------------
def test_detach_launches_the_job_before_returning(env: dict[str, str]) -> None:
    ws = _ws(env)
    r = _cli(env, "train", "--stocks", "SYN", *SMALL, "--epochs", "50", "--detach")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "plan SYN: 420 rows" in r.stdout and "context 32 horizon 16" in r.stdout  # the planner's view
    job_id = next(ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("queued "))
    try:
        assert "on cpu (pid" in r.stdout and f"forecast-console attach {job_id}" in r.stdout
        pid = json.loads((ws / "jobs" / job_id / "pid.json").read_text())["pid"]
        assert psutil.pid_exists(pid)  # running on its own, after the command returned
        with Store.open(ws, readonly=True) as st:
            assert st.get_job(job_id)["state"] == "running"
    finally:
        _kill_job(ws, job_id)


def test_ctrl_c_detaches_then_cancel_stops_training_at_a_checkpoint(env: dict[str, str]) -> None:
    ws = _ws(env)
    p = subprocess.Popen([sys.executable, "-c", ENTRY, "train", "--stocks", "SYN", *SMALL, "--epochs", "50"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert p.stdout is not None
    lines = []
    try:
        for line in p.stdout:
            lines.append(line)
            if "] progress " in line and " training" in line:  # a training step (not planning/loading)
                break
        job_id = next(ln.split()[1] for ln in lines if ln.startswith("queued "))
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, "".join(lines) + out
    assert f"job {job_id} keeps running" in out and f"forecast-console attach {job_id}" in out
    assert "interrupted" not in out
    pid = json.loads((ws / "jobs" / job_id / "pid.json").read_text())["pid"]
    assert psutil.pid_exists(pid)

    def cancel() -> tuple[str, str | None]:
        from engine.client import JobClient

        jc = JobClient(ws)  # the service the CLI started still runs the job
        assert (jc.job(job_id) or {}).get("state") == "running"
        jc.cancel(job_id)
        rec = jc.wait(job_id, timeout=10)
        return rec["state"], rec.get("reason")

    try:
        state, reason = cancel()
    finally:
        _kill_job(ws, job_id)
    events = (ws / "jobs" / job_id / "events.jsonl").read_text()
    assert state == "cancelled" and "forced" not in (reason or "") and "forced" not in events
    assert json.loads((ws / "jobs" / job_id / "exit.json").read_text())["code"] == 143  # its own exit
    assert list((ws / "runs").glob("chronos2-tiny-SYN-*/checkpoint/state-*/state.json"))  # resume continues


def test_train_with_a_console_open_runs_in_the_same_engine(env: dict[str, str]) -> None:
    ws = _ws(env)

    r, seen = cli_beside_console(ws, lambda: _cli(env, "train", "--stocks", "SYN", *SMALL, "--epochs", "1",
                                                  "--max-steps-per-epoch", "2"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "succeeded" in r.stdout
    assert "SYN      chronos2 val_loss" in r.stdout  # the trained run, from the job's result
    [st] = seen
    assert st.kind == "train" and st.state == "succeeded"
    with Store.open(ws, readonly=True) as ro:
        assert [r_["symbol"] for r_ in ro.runs() if r_.get("job_id") == st.id] == ["SYN"]


# ---- the training loop's safe points --------------------------------------------------------------
def test_cancel_during_validation_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    import torch

    from engine.forecasters.registry import load_forecaster
    from engine.forecasters.training import TrainConfig, train, windows_from_close

    torch.set_num_threads(1)
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, 500))
    tr = windows_from_close(close, 0, 380, 32, 16, stride=8)
    va = windows_from_close(close, 380, 440, 32, 16, span="val", train_end=380)
    cfg = TrainConfig(epochs=2, lr=3e-3, batch_size=8, seed=5, max_steps_per_epoch=3, loss="huber")

    def fresh() -> object:
        fc = load_forecaster("chronos2", "tiny")
        fc.prepare_finetune("full", seed=5)
        return fc

    a = fresh()
    ra = train(a, tr, va, cfg, ckpt_dir=tmp_path / "a")
    calls = {"n": 0}

    def during_first_validation() -> bool:  # 3 step checks, then the validation batches of epoch 0
        calls["n"] += 1
        return calls["n"] > 3 + 2

    b = fresh()
    rb = train(b, tr, va, cfg, ckpt_dir=tmp_path / "b", cancelled=during_first_validation)
    assert rb.cancelled and rb.steps == 3 and rb.val_losses == []  # stopped inside validation
    c = fresh()
    rc = train(c, tr, va, cfg, ckpt_dir=tmp_path / "b", resume=True)
    assert rc.steps == ra.steps == 6 and rc.val_losses == ra.val_losses
    sa, sc = a.trainable_state(), c.trainable_state()
    assert all(torch.equal(sa[k], sc[k]) for k in sa)
