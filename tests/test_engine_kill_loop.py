"""SIGKILL the engine again and again while it takes spooled jobs: no job is lost, none runs or is
recorded twice, every one ends in a final state with a reason (bench/engine_kill_loop.py runs the
full count)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.engine_kill_loop import run_kill_loop


def test_engine_killed_repeatedly_loses_and_doubles_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    out = run_kill_loop(tmp_path / "ws", n_jobs=24, kills=12, seed=7, max_life_s=0.5)
    print(out.line())
    assert out.ok, out.line() + f" lost={out.lost[:3]} dup={out.duplicated_results[:3]} " \
                                f"double={out.double_started[:3]} bad={out.without_reason[:3]}"
    assert sum(out.states.values()) == 24 and out.states.get("succeeded", 0) >= 12
    assert not [p for p in (tmp_path / "ws" / "jobs" / "inbox").iterdir() if p.is_file()]  # every marker taken
