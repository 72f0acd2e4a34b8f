"""Headless eval commands: real CLI process, real engine, real worker; bad input changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_eval_support import write_csv


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FORECAST_DATA": str(tmp / "data"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "console.cli", "-w", str(tmp / "ws"), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_validate_then_regression_headless(tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "AAA.csv", n=300, seed=2)
    r = _cli(tmp_path, "validate", "--stocks", "AAA", "--model", "naive", "--horizon", "8", "--context", "32", "--json")
    assert r.returncode == 0, r.stderr
    (payload,) = json.loads(r.stdout)
    assert payload["picks"][0]["symbol"] == "AAA"
    store = json.loads((tmp_path / "ws" / "store.json").read_text())
    assert store["best"], "the engine recorded the pick"
    r = _cli(tmp_path, "regression", "--stocks", "AAA", "--model", "naive", "--horizon", "8", "--context", "32")
    assert r.returncode == 0, r.stderr
    assert "| AAA | naive |" in r.stdout


def test_unknown_symbol_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "AAA.csv", n=300)
    r = _cli(tmp_path, "compare", "--stocks", "ZZZ")
    assert r.returncode == 2 and "ZZZ" in r.stderr and "Traceback" not in r.stderr
    r = _cli(tmp_path, "sweep", "--stocks", "AAA", "--model", "naive")
    assert r.returncode == 2 and "foundation model" in r.stderr
    assert not (tmp_path / "ws" / "store.json").exists()
