"""One rule for a dead job, watched or not: interrupted when it can resume from a checkpoint, else
failed; the reason names the signal, OOM or a full disk."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from engine.controller import Engine
from engine.deaths import EXIT_DISK_FULL, dead_state, death_reason, oom_kills
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec
from store import Store
from tests.helpers import wait_for


def _engine(ws: Path) -> Engine:
    return Engine(ws, store=Store.open(ws, fsync=False), poll_interval=0.02, heartbeat_s=0.2,
                  validate_symbols=False, gpu_source=FakeGpuSource(0))


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    return tmp_path / "ws"


@pytest.mark.asyncio
async def test_a_killed_job_is_interrupted_if_it_checkpointed_else_failed_watched_or_not(ws: Path) -> None:
    eng = _engine(ws)
    await eng.start()
    slow = {"steps": 400, "sleep": 0.05}
    try:
        ck = eng.submit(JobSpec.create("baseline", ["AAPL"], params={"_test": {**slow, "checkpoint": True}}))
        plain = eng.submit(JobSpec.create("baseline", ["MSFT"], params={"_test": slow}))
        await wait_for(lambda: ck.progress_done >= 2 and plain.progress_done >= 2, timeout=20, what="jobs to run")
        os.kill(ck.pid, signal.SIGKILL)
        os.kill(plain.pid, signal.SIGKILL)
        await wait_for(lambda: ck.finished and plain.finished, timeout=10, what="deaths to be seen")
        assert ck.state == "interrupted" and "SIGKILL" in ck.reason
        assert plain.state == "failed" and "SIGKILL" in plain.reason
        assert eng.spec(eng.retry(ck.id).id).params["resume"] is True  # only the resumable one resumes
        # The same rule when no engine watches the death.
        unwatched = eng.submit(JobSpec.create("baseline", ["SPY"], params={"_test": {**slow, "checkpoint": True}}))
        await wait_for(lambda: unwatched.progress_done >= 2, timeout=20, what="job to run")
    finally:
        await eng.stop(cancel_running=False)
        eng.store.close()
    os.kill(unwatched.pid, signal.SIGKILL)
    doomed = psutil.Process(unwatched.pid)
    await wait_for(lambda: not doomed.is_running() or doomed.status() == psutil.STATUS_ZOMBIE, timeout=10,
                   what="the unwatched worker to die before the next engine looks")
    eng2 = _engine(ws)
    await eng2.start()
    try:
        j = eng2.job(unwatched.id)
        assert j.state == "interrupted" and "no engine was watching" in j.reason
    finally:
        await eng2.stop(cancel_running=True)
        eng2.store.close()


@pytest.mark.asyncio
async def test_a_worker_on_a_full_disk_says_so(ws: Path) -> None:
    eng = _engine(ws)
    await eng.start()
    try:
        st = eng.submit(JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 2, "crash": "enospc"}}))
        await wait_for(lambda: st.finished, timeout=20, what="the job to end")
        assert st.state == "failed" and st.exit_code == EXIT_DISK_FULL
        assert st.reason.startswith("disk full (ENOSPC)") and "No space left on device" in st.reason
    finally:
        await eng.stop()
        eng.store.close()


def test_reasons_and_states() -> None:
    assert dead_state("train", True) == "interrupted" and dead_state("train", False) == "failed"
    assert dead_state("sweep", False) == "interrupted"  # coordinators resume from their study
    kill = "killed by signal SIGKILL (9)"
    assert death_reason(kill, None, 9, oom_before=3, oom_now=4).startswith("killed by the kernel's OOM killer")
    assert death_reason(kill, None, 9, oom_before=3, oom_now=3) == kill
    assert death_reason("exit code 75", EXIT_DISK_FULL, None).startswith("disk full")
    assert oom_kills(Path("/nonexistent/memory.events")) is None
