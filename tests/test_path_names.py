"""Every name that becomes a path is checked like a symbol: nothing is written outside the workspace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.jobs import JobSpec, JobSpecError
from engine.names import PathNameError, validate_name
from engine.tasks.pipeline import Pipeline, plan_steps
from engine.tasks.report import write_report
from engine.tasks.sweep import SweepError, open_study, study_lock
from store import Store, StoreError

HOSTILE = ["../../../../evil", "/etc/passwd", "a/b", "..", ".hidden", "a b", "", "x" * 129, "a\\b", "a\nb",
           "é", None, 5]


@pytest.mark.parametrize("bad", HOSTILE)
def test_validate_name_refuses_path_like_and_odd_names(bad: object) -> None:
    with pytest.raises(PathNameError, match="is not valid"):
        validate_name("pipeline name", bad)


def test_good_names_pass() -> None:
    for ok in ("tiny-h16-0123abcd", "report-20260101-120000", "toto-SPY-tiny-h16-quick", "a.b_c-1"):
        assert validate_name("name", ok) == ok


def test_every_path_name_user_refuses_a_walk_out(tmp_path: Path) -> None:
    ws = tmp_path / "a" / "b" / "ws"
    ws.mkdir(parents=True)
    bad = "../../../evil"
    with pytest.raises(PathNameError):
        Pipeline(ws, bad, plan_steps(["SPY"], preset="tiny", horizon=16, context=None, models=["toto"]))
    with pytest.raises(SweepError, match="sweep study name"):
        open_study(ws, bad, "quick")
    with pytest.raises(SweepError, match="sweep study name"):
        with study_lock(ws, bad, "test"):
            pass
    with pytest.raises(PathNameError, match="report name"):
        write_report(ws / "reports", bad, {"x": 1}, "# x")
    with pytest.raises(JobSpecError, match="pipeline: parameter 'name'"):
        JobSpec.create("pipeline", ["SPY"], params={"name": bad})
    with pytest.raises(JobSpecError, match="sweep: parameter 'name'"):
        JobSpec.create("sweep", ["SPY"], "toto", params={"name": "/tmp/x"})
    with Store.open(ws, hyperparams_dir=tmp_path / "hp") as s:
        with pytest.raises(StoreError, match="job id"):
            s.put_job({"id": bad, "state": "queued"})
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_pipeline_cli_refuses_a_path_like_name(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = subprocess.run([sys.executable, "-m", "console.cli", "--workspace", str(ws), "pipeline", "--stocks", "SPY",
                        "--name", "../../evil"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "parameter 'name' '../../evil' is not valid" in r.stderr
    assert not list(tmp_path.rglob("evil*"))
