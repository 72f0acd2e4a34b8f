"""SIGKILL the engine again and again while it takes spooled jobs: no job is lost, none runs or is
recorded twice, every one ends in a final state with a reason (bench/engine_kill_loop.py runs the
full count). And the engine killed at the worst moment of a launch, on purpose: after recording a
job as running, before or just after its worker started (engine.launches)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench.engine_kill_loop import fork_engine, run_kill_loop, spool_jobs
from engine.backends.local import LocalBackend
from engine.eventlog import read_events
from engine.intake import spool_submit
from engine.jobs import JobDir, JobSpec
from engine.launches import ENV_LAUNCH, MAX_LAUNCHES, give_up_reason, requeue_reason
from engine.scheduler import Scheduler
from engine.worker import EXIT_REVOKED
from store import Store


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    monkeypatch.setenv("FORECAST_WARM", "0")  # one worker process per job: no warm-up before the first
    return tmp_path / "ws"


def test_engine_killed_repeatedly_loses_and_doubles_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    out = run_kill_loop(tmp_path / "ws", n_jobs=24, kills=12, seed=7, max_life_s=0.5)
    print(out.line())
    assert out.ok, out.line() + f" lost={out.lost[:3]} dup={out.duplicated_results[:3]} " \
                                f"double={out.double_started[:3]} bad={out.without_reason[:3]}"
    # a job the engine stops before its worker starts is queued again: only one caught at launch five times fails
    assert sum(out.states.values()) == 24 and out.states.get("succeeded", 0) >= 20
    assert not [p for p in (tmp_path / "ws" / "jobs" / "inbox").iterdir() if p.is_file()]  # every marker taken


class EngineDiesAtLaunch(LocalBackend):
    """The engine is SIGKILLed as it starts a worker: the job is recorded as running, no worker exists."""

    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)


class EngineDiesOnceTheWorkerRuns(LocalBackend):
    """The engine starts the worker and is SIGKILLed before it writes pid.json, once the worker runs
    (its `started` event is written; at most 20 s)."""

    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Any:
        jd = JobDir(job_dir)
        with open(jd.stderr, "ab") as err:
            subprocess.Popen([self.python, "-m", "engine.worker", str(job_dir)], stdin=subprocess.DEVNULL,
                             stdout=err, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while not read_events(jd.events).events and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)


def _killed(pid: int) -> bool:
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _finish(ws: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    """A last engine (the real backend) runs until every job is final; the job records it left."""
    _, status = os.waitpid(fork_engine(ws, until_done=ids, cpu_slots=1, life_s=60), 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with Store.open(ws, readonly=True) as st:
        return {r["id"]: r for r in st.jobs()}


def _events(ws: Path, job_id: str) -> list[dict[str, Any]]:
    return read_events(JobDir.of(ws, job_id).events).events


def _claimed_by(ws: Path, job_id: str, launch: int) -> str:
    return str(json.loads(JobDir.of(ws, job_id).launch_claim(launch).read_text())["by"])


def test_a_job_whose_engine_died_before_its_worker_started_is_queued_again_in_its_place_and_runs_once(
        ws: Path) -> None:
    ids = spool_jobs(ws, 3)  # same priority, in this order
    assert _killed(fork_engine(ws, backend=EngineDiesAtLaunch, cpu_slots=1, life_s=20))
    with Store.open(ws, readonly=True) as st:
        left = st.get_job(ids[0])
    assert left is not None and (left["state"], left.get("launches")) == ("running", 1)
    assert not JobDir.of(ws, ids[0]).pid.exists()

    recs = _finish(ws, ids)
    assert [recs[i]["state"] for i in ids] == ["succeeded"] * 3, [recs[i].get("reason") for i in ids]
    first = recs[ids[0]]
    assert first["launches"] == 2 and first["reason"] is None
    evs = _events(ws, ids[0])
    assert [e["type"] for e in evs if e["type"] in ("log", "started")][:2] == ["log", "started"]
    assert evs[0]["msg"] == requeue_reason(1) and sum(e["type"] == "started" for e in evs) == 1
    assert _claimed_by(ws, ids[0], 1) == "engine" and _claimed_by(ws, ids[0], 2) == "worker"
    with Store.open(ws, readonly=True) as st:
        assert sorted(r["job_id"] for r in st.runs()) == sorted(ids)  # each result recorded once
    # It kept its place: on one slot, the jobs started in the order they were submitted.
    starts = [next(e["t"] for e in _events(ws, i) if e["type"] == "started") for i in ids]
    assert starts == sorted(starts)

    # A worker of the revoked launch that comes late (a process that was still starting) does nothing.
    jd = JobDir.of(ws, ids[0])
    before = (jd.events.read_bytes(), jd.exit.read_bytes())
    late = subprocess.run([sys.executable, "-m", "engine.worker", str(jd.path)], capture_output=True, text=True,
                          env={**os.environ, ENV_LAUNCH: "1"}, timeout=60)
    assert late.returncode == EXIT_REVOKED, late.stderr
    assert (jd.events.read_bytes(), jd.exit.read_bytes()) == before


def test_a_job_queued_again_goes_back_to_its_place_by_priority_and_arrival() -> None:
    sched = Scheduler(cpu_slots=1)
    a, b, c, d = (replace(JobSpec.create("baseline", ["AAPL"], priority=p), created_at=1000.0 + i)
                  for i, p in enumerate((0, 0, 0, 5)))
    for spec in (b, d, c):
        sched.push(spec)
    sched.requeue(a)  # admitted before b and c arrived, and never ran
    assert [s.id for s in sched.queued()] == [d.id, a.id, b.id, c.id]


def test_a_job_whose_launch_stops_the_engine_every_time_fails_after_max_launches(ws: Path) -> None:
    ids = spool_jobs(ws, 1)
    for n in range(1, MAX_LAUNCHES + 1):  # each engine queues it again, launches it, and dies
        assert _killed(fork_engine(ws, backend=EngineDiesAtLaunch, cpu_slots=1, life_s=20))
        with Store.open(ws, readonly=True) as st:
            rec = st.get_job(ids[0])
        assert rec is not None and (rec["state"], rec.get("launches")) == ("running", n)
    rec = _finish(ws, ids)[ids[0]]
    assert rec["state"] == "failed" and rec["reason"] == give_up_reason(MAX_LAUNCHES)
    assert rec["launches"] == MAX_LAUNCHES
    assert [_claimed_by(ws, ids[0], n) for n in range(1, MAX_LAUNCHES + 1)] == ["engine"] * MAX_LAUNCHES
    assert not any(e["type"] == "started" for e in _events(ws, ids[0]))


def test_a_worker_that_started_before_its_engine_wrote_pid_json_is_reattached(ws: Path) -> None:
    # long enough (~2 s) to be running still when the next engine starts
    run = {"model": "toto", "symbol": "AAPL", "hyperparams": {}, "metrics": {"val_mae_pct": 1.0}}
    spec = JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 40, "sleep": 0.05,
                                                                  "result": {"runs": [run]}}})
    spool_submit(ws, spec)
    ids = [spec.id]
    assert _killed(fork_engine(ws, backend=EngineDiesOnceTheWorkerRuns, cpu_slots=1, life_s=40))
    assert not JobDir.of(ws, ids[0]).pid.exists()
    rec = _finish(ws, ids)[ids[0]]
    assert rec["state"] == "succeeded" and rec["launches"] == 1, rec.get("reason")
    assert _claimed_by(ws, ids[0], 1) == "worker"
    assert sum(e["type"] == "started" for e in _events(ws, ids[0])) == 1
