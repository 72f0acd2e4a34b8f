"""One rule for headless commands: with a console open (a live client of the workspace's engine
service, holding the store open read-only), every writing command works exactly as without one,
through the engine — each run here as a real subprocess, its effect read back from the store.

Cost: the evaluating commands run naive (numpy) on one 420-row CSV; train, sweep and pipeline are
submitted, seen by the console, and cancelled (their own training is tested elsewhere).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from console.job_mirror import EngineMirror
from store import Store
from tests.helpers import wait_for, write_cycle_csv

ENTRY = "import sys; from console.cli import main; sys.exit(main(sys.argv[1:]))"
H = ("--horizon", "16")
W = ("--val-windows", "8", "--test-windows", "8")  # few windows: the path is under test, not the scores


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "FORECAST_WORKSPACE": str(tmp / "ws"), "FORECAST_DATA": str(tmp / "data"),
            "FORECAST_HYPERPARAMS": str(tmp / "hp"), "FORECAST_TEST_HOOKS": "1", "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1"}


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                              timeout=120, env=env)

    r = await asyncio.to_thread(call)
    assert r.returncode == 0, f"{' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _queued(r: subprocess.CompletedProcess[str]) -> str:
    """The job id from a command's `queued ID` line."""
    return next(line.split()[1] for line in r.stdout.splitlines() if line.startswith("queued "))


async def _submit_then_detach(env: dict[str, str], mirror: EngineMirror, kind: str, *args: str) -> str:
    """Start a following command (sweep, pipeline: no --detach), wait until the console sees its job,
    then Ctrl-C it; the job's id. The job goes on either way: Ctrl-C while following detaches (exit 0),
    one that lands before following began ends the command (130) — never a traceback."""
    before = {j.id for j in mirror.jobs()}
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        await wait_for(lambda: any(j.kind == kind and j.id not in before for j in mirror.jobs()), 60,
                       f"the console to see the {kind} job")
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    word = {0: "detached", 130: "interrupted"}.get(proc.returncode)
    assert word is not None and word in err, f"{kind}: {proc.returncode}\n{out}\n{err}"
    assert "Traceback" not in err, err
    return next(j.id for j in mirror.jobs() if j.kind == kind and j.id not in before)


async def test_every_writing_command_works_while_a_console_holds_the_workspace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cycle_csv(tmp_path / "data" / "SPY.csv")
    env = _env(tmp_path)
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    # The service the console starts takes this process's environment: its data folder and test hooks.
    for k in ("FORECAST_WORKSPACE", "FORECAST_DATA", "FORECAST_HYPERPARAMS", "FORECAST_TEST_HOOKS"):
        monkeypatch.setenv(k, env[k])
    mirror = EngineMirror(ws, poll_interval=0.05, hyperparams_dir=hp)
    try:
        await mirror.open()
        reader = Store.open(ws, readonly=True, hyperparams_dir=hp)  # what a console holds open
        try:
            await _cli(env, "baseline", "--stocks", "SPY", *H)
            assert reader.baselines(symbol="SPY", horizon=16)
            await _cli(env, "validate", "--stocks", "SPY", "--model", "naive", *H, *W)
            assert reader.pick("naive", "SPY", horizon=16) is not None
            await _cli(env, "calibrate", "--stocks", "SPY", "--model", "naive", *H, *W)
            await _cli(env, "compare", "--stocks", "SPY", "--model", "naive", *H, *W)
            assert reader.comparisons(symbol="SPY")
            await _cli(env, "regression", "--stocks", "SPY", *H, *W)
            await _cli(env, "promote", "--model", "naive", "--symbol", "SPY", *H)
            assert (hp / "naive" / "SPY.json").is_file()
            await _cli(env, "rollback", "--model", "naive", "--symbol", "SPY")
            assert not (hp / "naive" / "SPY.json").exists()

            slow = '_test={"steps": 2000, "sleep": 0.05}'
            jid = _queued(await _cli(env, "run", "baseline", "--stocks", "SPY", "--detach", "--param", slow))
            await wait_for(lambda: getattr(mirror.job(jid), "state", None) == "running", 30, "the run job running")
            await _cli(env, "cancel", jid)
            await wait_for(lambda: getattr(mirror.job(jid), "state", None) == "cancelled", 30, "the job cancelled")
            again = _queued(await _cli(env, "retry", jid, "--detach"))
            await wait_for(lambda: mirror.job(again) is not None, 30, "the retry in the console")
            await _cli(env, "cancel", again)
            train = _queued(await _cli(env, "train", "--stocks", "SPY", "--model", "toto", "--preset", "tiny",
                                       "--epochs", "1", "--detach"))
            await wait_for(lambda: mirror.job(train) is not None, 30, "the train job in the console")
            await _cli(env, "cancel", train)
            sweep = await _submit_then_detach(env, mirror, "sweep", "sweep", "--stocks", "SPY", "--model", "toto",
                                              "--preset", "tiny", "--max-runs", "1", "--epochs", "1")
            await _cli(env, "cancel", sweep)
            pipe = await _submit_then_detach(env, mirror, "pipeline", "pipeline", "--stocks", "SPY", "--model",
                                             "toto", "--preset", "tiny", *H)
            await _cli(env, "cancel", pipe)
            await wait_for(lambda: all(j.finished for j in mirror.jobs()), 60, "every job to end")

            gone = {j.id for j in mirror.jobs()}
            r = await _cli(env, "gc", "--older-than", "0s")
            assert f"{len(gone)} job(s)" in r.stdout, r.stdout
            assert reader.jobs() == []  # the records went (through the engine) ...
            await wait_for(lambda: not mirror.jobs(), 10, "the console to drop the removed jobs")  # ... and the rows
            assert not any((ws / "jobs" / j).exists() for j in gone)
        finally:
            reader.close()
    finally:
        await mirror.close()
