"""`forecast-console run/jobs/attach/cancel/retry` as real processes (not a tty: plain lines)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.helpers import cli_beside_console

# What the `forecast-console` script runs (`-m console.cli` would load the module twice).
ENTRY = "import sys; from console.cli import main; sys.exit(main(sys.argv[1:]))"


def cli(ws: Path, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FORECAST_WORKSPACE": str(ws), "FORECAST_TEST_HOOKS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def popen_cli(ws: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FORECAST_WORKSPACE": str(ws), "FORECAST_TEST_HOOKS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", ENTRY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def test_run_follows_to_the_end_and_jobs_lists_it(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = cli(ws, "run", "baseline", "--stocks", "AAPL", "--priority", "3",
            "--param", '_test={"steps": 3, "sleep": 0.05}')
    assert r.returncode == 0, r.stdout + r.stderr
    assert "succeeded" in r.stdout and "progress 3/3" in r.stdout
    listing = cli(ws, "jobs", "--all", "--json")
    recs = json.loads(listing.stdout)
    assert len(recs) == 1 and recs[0]["state"] == "succeeded" and recs[0]["priority"] == 3
    assert "no queued or running jobs" in cli(ws, "jobs").stdout


def test_bad_input_is_one_line_error_and_queues_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = cli(ws, "run", "baseline", "--stocks", "NOSUCHSYM")
    assert r.returncode == 2 and "unknown symbol" in r.stderr and "Traceback" not in r.stderr
    r = cli(ws, "run", "train", "--stocks", "AAPL")
    assert r.returncode == 2 and "needs a model" in r.stderr
    assert not (ws / "jobs").exists() or not any((ws / "jobs").glob("*/spec.json"))
    r = cli(ws, "cancel", "no-such-job")
    assert r.returncode == 2 and "no such job" in r.stderr


def test_ctrl_c_detaches_then_cancel_from_another_process(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    p = popen_cli(ws, "run", "baseline", "--stocks", "AAPL", "--param", '_test={"steps": 400, "sleep": 0.05}')
    assert p.stdout is not None
    lines = []
    for line in p.stdout:
        lines.append(line)
        if "started on cpu" in line:
            break
    job_id = lines[0].split()[1]
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=15)
    assert p.returncode == 0 and f"forecast-console attach {job_id}" in out
    pid = json.loads((ws / "jobs" / job_id / "pid.json").read_text())["pid"]
    assert psutil.pid_exists(pid)  # the job outlived the CLI
    r = cli(ws, "cancel", job_id)
    assert r.returncode == 0 and "cancelled" in r.stdout, r.stdout + r.stderr
    r = cli(ws, "retry", job_id, "--detach")
    assert r.returncode == 0 and "attempt 2" in r.stdout, r.stdout + r.stderr
    new_id = r.stdout.split()[1]
    info = json.loads((ws / "jobs" / new_id / "pid.json").read_text())
    os.killpg(info["pgid"], signal.SIGKILL)  # clean up without another (slow) CLI start


def test_run_with_a_console_open_behaves_as_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console is a client of the same engine service: the CLI's job runs there, the CLI follows it
    to the end exactly as alone, and the open console sees the job live to its end."""
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    ws = tmp_path / "ws"

    r, seen = cli_beside_console(ws, lambda: cli(ws, "run", "baseline", "--stocks", "AAPL",
                                                 "--param", '_test={"steps": 3, "sleep": 0.05}'))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "progress 3/3" in r.stdout and "succeeded" in r.stdout and "spool" not in r.stdout
    [st] = seen
    assert st.state == "succeeded" and st.progress_done == 3
