"""The engine as a per-workspace service: real `forecast-console` processes, a real service process,
real workers; every wait is bounded and waits on a condition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from engine.client import JobClient
from engine.jobs import JobSpec
from store import Store

ENTRY = "import sys; from console.cli import main; sys.exit(main(sys.argv[1:]))"


def _env(ws: Path, idle: str = "1") -> dict[str, str]:
    return {**os.environ, "FORECAST_WORKSPACE": str(ws), "FORECAST_TEST_HOOKS": "1", "HF_HUB_OFFLINE": "1",
            "FORECAST_ENGINE_IDLE_S": idle, "OMP_NUM_THREADS": "1"}


def cli(ws: Path, *args: str, idle: str = "1") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, env=_env(ws, idle),
                          timeout=60)


def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_states(ws: Path) -> dict[str, str]:
    if not (ws / "store.json").exists():
        return {}
    with Store.open(ws, readonly=True) as st:
        return {r["id"]: r["state"] for r in st.jobs()}


def test_six_detached_train_jobs_on_two_slots_all_run_with_no_console(tmp_path: Path) -> None:
    """Six `train --detach` commands at once (they race to start the service), no console anywhere: all
    six run to the end on the service's two CPU slots; `engine status` shows it; it then exits by itself.
    Every job holds after its step until the test opens a gate: while they hold, two run and four wait
    (the status asked then finds the service at work), whatever the machine's load."""
    ws = tmp_path / "ws"
    gate = tmp_path / "gate"
    hook = "_test=" + json.dumps({"steps": 1, "hold": str(gate)})
    procs = [subprocess.Popen([sys.executable, "-c", ENTRY, "run", "train", "--stocks", "AAPL", "--model", "toto",
                               "--param", hook, "--detach"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(ws, idle="1.5")) for _ in range(6)]
    try:
        outs = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        ids = [o.split()[1] for o, _ in outs]
        assert len(set(ids)) == 6 and sum("(queued)" in o for o, _ in outs) >= 4  # 2 slots, none can end yet
        status = cli(ws, "engine", "status", "--json")
        info = json.loads(status.stdout)
        assert status.returncode == 0 and info["cpu_slots"] == 2 and info["workspace"] == str(ws.resolve())
        assert (info["running"], info["queued"]) == (2, 4), info
    finally:
        gate.touch()
    until(lambda: [stored_states(ws).get(i) for i in ids] == ["succeeded"] * 6, 60, "all six jobs to succeed")
    until(lambda: not JobClient(ws, ensure=False).running(), 20, "the idle service to close its socket")
    until(lambda: not psutil.pid_exists(info["pid"]), 20, "the idle service to exit by itself")
    assert not (ws / "engine.json").exists()
    r = cli(ws, "engine", "status")
    assert r.returncode == 1 and "not running" in r.stdout


def test_engine_start_stop_and_a_second_service_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = cli(ws, "engine", "start", "--idle", "30")
    assert r.returncode == 0 and "started" in r.stdout, r.stdout + r.stderr
    assert "already running" in cli(ws, "engine", "start").stdout
    second = subprocess.run([sys.executable, "-m", "engine.service", str(ws)], capture_output=True, text=True,
                            env=_env(ws), timeout=60)
    assert second.returncode == 3 and "not started" in second.stderr  # the writer lock holds one service
    r = cli(ws, "engine", "stop")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert not JobClient(ws, ensure=False).running()


def test_killed_service_is_restarted_by_the_next_client_and_recovers(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL the service with two jobs running; one worker is also killed while no engine watches. The
    next client starts a new service: the live job is re-attached and finishes; the dead one, a baseline with no
    checkpoint to resume from, is failed with the reason (the one dead-job rule of engine.deaths)."""
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    ws = tmp_path / "ws"
    jc = JobClient(ws, poll_interval=0.05)
    # `keep` must outlive the gap between the kill and the next service (seconds on a loaded machine) to be
    # re-attached rather than found finished.
    keep = JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 200, "sleep": 0.05}})
    doomed = JobSpec.create("baseline", ["MSFT"], params={"_test": {"steps": 500, "sleep": 0.1}})
    jc.submit(keep)
    jc.submit(doomed)
    until(lambda: all((jc.job(s.id) or {}).get("progress_done", 0) >= 1 for s in (keep, doomed)), 30,
          "both jobs to make progress")
    first = jc.status()
    assert first is not None
    os.kill(first["pid"], signal.SIGKILL)
    until(lambda: not jc.running(), 10, "the killed service's socket to vanish")
    pid = json.loads((ws / "jobs" / doomed.id / "pid.json").read_text())
    os.killpg(pid["pgid"], signal.SIGKILL)
    until(lambda: not psutil.pid_exists(pid["pid"]) or psutil.Process(pid["pid"]).status() == "zombie", 10,
          "the doomed worker to die")
    rec = jc.wait(keep.id, timeout=60)  # this request starts the new service
    assert rec["state"] == "succeeded" and rec["progress_done"] == 200
    second = jc.status()
    assert second is not None and second["pid"] != first["pid"]
    assert any("re-attached" in line for line in jc.detail(keep.id)["logs"])
    lost = jc.wait(doomed.id, timeout=30)
    assert lost["state"] == "failed" and "no engine was watching" in lost["reason"], lost
    assert stored_states(ws) == {keep.id: "succeeded", doomed.id: "failed"}
