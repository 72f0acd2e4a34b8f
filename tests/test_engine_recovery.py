"""Recovery after the engine dies, the spool used by a second process, stale heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.controller import Engine, spool_cancel, spool_submit
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec
from store import Store
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio

# A whole engine in a separate process: it submits three jobs on two CPU slots, prints their ids
# once two are running, then waits to be killed.
ENGINE_SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path
from engine.controller import Engine
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec
from store import Store

async def main():
    ws = Path(sys.argv[1])
    store = Store.open(ws, fsync=False)
    eng = Engine(ws, store=store, cpu_slots=2, poll_interval=0.02, heartbeat_s=0.2,
                 validate_symbols=False, gpu_source=FakeGpuSource(0))
    await eng.start()
    keep = eng.submit(JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 40, "sleep": 0.1}}))
    doomed = eng.submit(JobSpec.create("baseline", ["MSFT"], params={"_test": {"steps": 500, "sleep": 0.1}}))
    waiting = eng.submit(JobSpec.create("baseline", ["SPY"], params={"_test": {"steps": 1}}))
    while not (keep.progress_done >= 3 and doomed.progress_done >= 1):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # let the store catch up
    print(json.dumps({"keep": keep.id, "doomed": doomed.id, "waiting": waiting.id,
                      "doomed_pid": doomed.pid}), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    return tmp_path / "ws"


def make_engine(ws: Path, **kw: Any) -> Engine:
    kw.setdefault("poll_interval", 0.02)
    kw.setdefault("heartbeat_s", 0.2)
    kw.setdefault("cancel_grace_s", 1.0)
    kw.setdefault("validate_symbols", False)
    kw.setdefault("gpu_source", FakeGpuSource(0))
    return Engine(ws, store=Store.open(ws, fsync=False), **kw)


async def test_engine_killed_mid_job_reattaches_and_applies_the_dead_job_rule(ws: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", ENGINE_SCRIPT, str(ws)], stdout=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)  # type: ignore[union-attr]
        ids = json.loads(line)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait()
    os.kill(ids["doomed_pid"], signal.SIGKILL)  # this job dies while no engine watches
    await asyncio.sleep(0.1)

    eng = make_engine(ws)
    await eng.start()
    try:
        keep, doomed, waiting = eng.job(ids["keep"]), eng.job(ids["doomed"]), eng.job(ids["waiting"])
        assert keep is not None and doomed is not None and waiting is not None
        # No checkpoint to resume from: failed (engine.deaths), with the reason
        assert doomed.state == "failed" and "no exit status" in (doomed.reason or "")
        assert keep.state == "running" and waiting.state == "queued"
        seen_before = keep.progress_done
        assert seen_before >= 3  # rebuilt from the event file
        q = eng.subscribe()
        await wait_for(lambda: keep.state == "succeeded", timeout=15, what="re-attached job to finish")
        later = []
        while not q.empty():
            u = q.get_nowait()
            if u.job_id == keep.id and u.kind == "progress":
                later.append(u.data["done"])
        assert later and later[-1] == 40 and min(later) > seen_before - 1  # remaining events arrived
        assert [p["step"] for p in eng.curve(keep.id)] == list(range(1, 41))  # no gaps, no repeats
        assert keep.exit_code == 0
        await wait_for(lambda: waiting.state == "succeeded", what="re-queued job to run")
        resumed = eng.retry(doomed.id)
        assert "resume" not in eng.spec(resumed.id).params and resumed.attempt == 2  # nothing to resume from
        eng.cancel(resumed.id)
        await wait_for(lambda: resumed.finished)
    finally:
        await eng.stop(cancel_running=True)
        eng.store.close()
    with Store.open(ws, readonly=True) as ro:
        assert ro.get_job(ids["keep"])["state"] == "succeeded"
        assert ro.get_job(ids["doomed"])["state"] == "failed"


async def test_job_that_finished_while_no_engine_watched_is_recorded(ws: Path) -> None:
    eng = make_engine(ws)
    await eng.start()
    result = {"runs": [{"model": "naive", "symbol": "AAPL", "hyperparams": {}, "metrics": {"val_mae_pct": 2.0}}]}
    st = eng.submit(JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 8, "sleep": 0.1,
                                                                          "result": result}}))
    await wait_for(lambda: st.progress_done >= 1)
    await eng.stop()  # detach: the job keeps running
    eng.store.close()
    await wait_for(lambda: (ws / "jobs" / st.id / "exit.json").exists(), what="job to end on its own")
    with contextlib.suppress(psutil.NoSuchProcess):  # its process is gone (a warm worker ends with its engine)
        await asyncio.to_thread(psutil.Process(st.pid).wait, 5)
    eng2 = make_engine(ws)
    await eng2.start()
    try:
        st2 = eng2.job(st.id)
        assert st2 is not None and st2.state == "succeeded" and st2.progress_done == 8
        await eng2.stop()
        runs = eng2.store.runs(model="naive", symbol="AAPL")
        assert len(runs) == 1  # the result was stored exactly once
        assert len(eng2.curve(st.id)) == 8
    finally:
        eng2.store.close()
    # A third engine replays nothing twice.
    eng3 = make_engine(ws)
    await eng3.start()
    await eng3.stop()
    assert len(eng3.store.runs(model="naive", symbol="AAPL")) == 1
    eng3.store.close()


async def test_spooled_submit_and_cancel_are_picked_up(ws: Path) -> None:
    eng = make_engine(ws)
    await eng.start()
    try:
        spec = JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 2}})
        spool_submit(ws, spec)
        await wait_for(lambda: eng.job(spec.id) is not None and eng.job(spec.id).state == "succeeded")
        long = JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 500, "sleep": 0.05}})
        spool_submit(ws, long)
        await wait_for(lambda: eng.job(long.id) is not None and eng.job(long.id).state == "running")
        spool_cancel(ws, long.id)
        await wait_for(lambda: eng.job(long.id).state == "cancelled", timeout=3)
        bad = ws / "jobs" / "inbox" / "not-a-job"
        bad.touch()
        await wait_for(lambda: not bad.exists())
        assert "rejected" in (ws / "jobs" / "not-a-job" / "rejected.txt").read_text()
        assert eng.job("not-a-job") is None
        inbox = ws / "jobs" / "inbox"
        assert [p.name for p in inbox.iterdir()] == ["rejected"]  # no marker left, only refused ones' reasons
        assert "cannot read spec.json" in (inbox / "rejected" / "not-a-job").read_text()
    finally:
        await eng.stop(cancel_running=True)
        eng.store.close()


async def test_stale_heartbeat_is_a_warning_not_a_kill(ws: Path) -> None:
    eng = make_engine(ws, stale_after_s=0.3, heartbeat_s=30)
    await eng.start()
    try:
        st = eng.submit(JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 1, "sleep": 1.2}}))
        await wait_for(lambda: st.warning is not None, what="stale warning")
        assert st.state == "running" and "no heartbeat" in st.warning
        await wait_for(lambda: st.state == "succeeded")
        assert st.warning is None
    finally:
        await eng.stop(cancel_running=True)
        eng.store.close()
