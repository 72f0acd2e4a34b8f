"""QA regressions for the headless commands: bad input is one line, a sensible exit, and no change.

Each test pins a defect found by driving `forecast-console` as a user would (real files, real
store, real worker subprocesses where the defect lived in the job path).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.cli import main
from engine import paths
from engine.events import EventWriter
from engine.jobs import JobSpec
from engine.tasks import baseline
from engine.tasks.context import TaskContext
from store import Store, StoreError

SHIPPED = paths.PROJECT_ROOT / "trainingdata"
ENTRY = "import sys; from console.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data folder with SPY (good) and JUNK (binary), an empty workspace path, a hyperparams folder."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(SHIPPED / "SPY.csv", data / "SPY.csv")
    (data / "JUNK.csv").write_bytes(b"\x00\x01binary\xff" * 50)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(paths.ENV_DATA, str(data))
    monkeypatch.setenv(paths.ENV_WORKSPACE, str(tmp_path / "ws"))
    monkeypatch.setenv(paths.ENV_HYPERPARAMS, str(tmp_path / "hp"))
    return tmp_path / "ws"


def _cli(tmp_path: Path, *args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FORECAST_WORKSPACE": str(tmp_path / "ws"), "FORECAST_DATA": str(tmp_path / "data"),
           "FORECAST_TEST_HOOKS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=tmp_path)


def _one_line_error(err: str) -> bool:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("forecast-console: error:") and "Traceback" not in err


# ---- baseline ----------------------------------------------------------------------------------
def test_baseline_impossible_horizon_is_an_error_and_records_nothing(env: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--stocks", "SPY", "--horizon", "100000"]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and "horizon 100000" in err and "nothing recorded" in err
    assert not env.exists()


def test_baseline_named_bad_csv_is_an_error_and_records_nothing(env: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--stocks", "SPY", "JUNK", "--horizon", "1"]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and "JUNK.csv" in err and "binary" in err
    assert not env.exists()


def test_baseline_all_skips_bad_rows_without_recording_them(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--all", "--horizon", "1"]) == 1  # partial: JUNK failed
    out, err = capsys.readouterr()
    assert "JUNK" in out and "3 of 6 rows could not be computed" in err
    with Store.open(env, readonly=True) as st:
        rows = st.baselines()
    assert {r.symbol for r in rows} == {"SPY"} and len(rows) == 3
    # A later impossible horizon must not overwrite stored numbers with empty rows.
    assert main(["baseline", "--stocks", "SPY", "--horizon", "1", "100000"]) == 1
    with Store.open(env, readonly=True) as st:
        assert all(r.metrics.mae_pct is not None and not r.error for r in st.baselines())


def test_baseline_job_fails_when_nothing_can_be_computed(tmp_path: Path) -> None:
    def run(horizons: list[int]) -> dict:
        spec = JobSpec.create("baseline", ["SPY"], params={"horizon": horizons})
        writer = EventWriter(tmp_path / f"events-{len(horizons)}.jsonl", spec.id)
        ctx = TaskContext(job_id=spec.id, workspace=tmp_path, job_dir=tmp_path, events=writer,
                          data_dirs=[SHIPPED])
        try:
            return baseline.run(spec, ctx)
        finally:
            writer.close()

    with pytest.raises(ValueError, match="no baseline could be computed"):
        run([100000])
    result = run([1, 100000])
    assert {r["horizon"] for r in result["baselines"]} == {1}  # error rows are not stored
    assert result["summary"]["errors"] == 3


# ---- jobs: following, listing, ids ---------------------------------------------------------------
def test_run_prints_the_jobs_last_warnings_before_the_verdict(env: Path) -> None:
    r = _cli(env.parent, "run", "baseline", "--stocks", "SPY", "--param", "horizon=[1, 100000]")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    warn = next(i for i, ln in enumerate(lines) if "warning: SPY h=100000" in ln)
    assert warn < next(i for i, ln in enumerate(lines) if ln.startswith("job ") and ln.endswith("succeeded"))
    assert "baseline SPY — queued" in r.stdout  # no double space for a job without a model


def test_jobs_records_a_detached_job_that_ended(env: Path) -> None:
    r = _cli(env.parent, "run", "baseline", "--stocks", "SPY", "--param", "horizon=1", "--detach")
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.split()[1]
    deadline = time.monotonic() + 30
    while not (env / "jobs" / job_id / "exit.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    listing = _cli(env.parent, "jobs", "--all", "--json")
    recs = {d["id"]: d for d in json.loads(listing.stdout)}
    assert recs[job_id]["state"] == "succeeded"
    with Store.open(env, readonly=True) as st:
        assert len(st.baselines(symbol="SPY", horizon=1)) == 3  # its result reached the store too


@pytest.mark.parametrize("cmd", ["attach", "cancel", "retry"])
@pytest.mark.parametrize("job_id", ["../../etc", "nosuch"])
def test_job_commands_refuse_bad_ids_and_create_nothing(env: Path, capsys: pytest.CaptureFixture[str],
                                                        cmd: str, job_id: str) -> None:
    assert main([cmd, job_id]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and ("not valid" in err if "/" in job_id else "no such job" in err)
    assert not env.exists()


def test_cancel_of_a_finished_job_is_refused_without_an_engine(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = JobSpec.create("baseline", ["SPY"])
    with Store.open(env) as holder:
        (env / "jobs" / spec.id).mkdir(parents=True)
        spec.write(env / "jobs" / spec.id)
        holder.put_job({"id": spec.id, "kind": "baseline", "symbols": ["SPY"], "model": None,
                        "state": "succeeded", "priority": 0, "attempt": 1})
    assert main(["cancel", spec.id]) == 2
    assert "already succeeded" in capsys.readouterr().err
    assert not (env / "engine.json").exists()  # refused from the store's record: no engine was started


def test_attach_reports_the_engines_verdict_on_a_dead_job(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A job recorded running whose process died while no engine watched: attach starts the engine,
    which applies the dead-job rule (no checkpoint reported: failed, engine.deaths) and attach prints
    that verdict (exit 1)."""
    spec = JobSpec.create("train", ["SPY"], model="toto")
    job_dir = env / "jobs" / spec.id
    with Store.open(env) as holder:
        job_dir.mkdir(parents=True)
        spec.write(job_dir)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (job_dir / "pid.json").write_text(json.dumps({"pid": dead.pid, "pgid": dead.pid, "create_time": 1.0}))
        holder.put_job({"id": spec.id, "kind": "train", "symbols": ["SPY"], "model": "toto",
                        "state": "running", "priority": 0, "attempt": 1, "spec": spec.to_dict()})
    assert main(["attach", spec.id]) == 1
    out = capsys.readouterr().out
    assert f"job {spec.id} failed: the process died while no engine was watching" in out


def test_jobs_on_a_file_workspace_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wsfile").write_text("x")
    assert main(["-w", str(tmp_path / "wsfile"), "jobs"]) == 2
    assert "not a folder" in capsys.readouterr().err


# ---- store, global flags, report ------------------------------------------------------------------
@pytest.mark.parametrize("content, why", [
    ({"jobs": {"1": {}}}, "lacks id"),
    ({"jobs": {"1": "x"}}, "not a JSON object"),
    ({"runs": {"1": {"model": 5}}}, "lacks run_id"),
    ({"best": {"1": {"model": "toto", "symbol": "SPY", "horizon": 16, "current": 3}}}, "current is not a JSON object"),
])
def test_store_with_broken_documents_is_refused_as_corrupt(env: Path, capsys: pytest.CaptureFixture[str],
                                                           content: dict, why: str) -> None:
    env.mkdir()
    raw = json.dumps(content).encode()
    (env / "store.json").write_bytes(raw)
    with pytest.raises(StoreError, match=why):
        Store.open(env, readonly=True)
    for argv in (["jobs", "--all"], ["runs"], ["best", "--model", "toto"], ["report"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert _one_line_error(err) and "corrupt" in err
    assert (env / "store.json").read_bytes() == raw


def test_data_flag_naming_a_file_is_refused(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = env.parent / "data" / "SPY.csv"
    assert main(["--data", str(csv), "baseline", "--all"]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and "is a file" in err
    assert not env.exists()


def test_report_to_an_unwritable_path_names_that_path(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--out", "/proc/qa-report.md"]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and "/proc/qa-report.md" in err and ".tmp" not in err


def test_second_rollback_says_everything_was_rolled_back(env: Path) -> None:
    with Store.open(env, hyperparams_dir=env.parent / "hp") as st:
        run_id = st.log_run("toto", "SPY", {"lr": 1e-3}, {"val_mae_pct": 1.0})
        st.promote("toto", "SPY", source=run_id)
        assert st.rollback("toto", "SPY") is None
        with pytest.raises(StoreError, match="nothing to roll back for toto/SPY: every promotion was already"):
            st.rollback("toto", "SPY")
        with pytest.raises(StoreError, match="no promotion is recorded"):
            st.rollback("toto", "NVDA")


def test_run_refuses_a_symbol_whose_csv_is_bad_and_queues_nothing(env: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "baseline", "--stocks", "SPY", "JUNK", "--detach"]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and "JUNK.csv" in err
    assert not env.exists()


def test_hand_edited_decision_row_with_a_wrong_type_names_the_record(env: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A store that parses but holds a mistyped record: a one-line error naming it, not a traceback."""
    with Store.open(env) as st:
        st.set_pick("toto", "SPY", {"config": {"num_samples": 8}, "horizon": 16, "validation": {"mae_pct": 1.0}})
    doc = json.loads((env / "store.json").read_text())
    (key,) = doc["best"]
    doc["best"][key]["current"]["validation"]["mae_pct"] = "low"
    (env / "store.json").write_text(json.dumps(doc))
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert _one_line_error(err) and "pick toto/SPY h=16" in err and "validation.mae_pct" in err
