"""Workers are capped at the cores they were admitted for (engine.threads), never the whole machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import threads
from engine.controller import Engine
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec, Resources
from engine.scheduler import Scheduler
from store import Store
from tests.helpers import wait_for


def test_share_splits_the_cores_between_slots() -> None:
    assert threads.share(2, cores=16) == 8
    assert threads.share(3, cores=16) == 5  # 3 × 5 ≤ 16
    assert threads.share(4, cores=2) == 1  # never zero
    env = threads.thread_env(3)
    assert {env[k] for k in threads.THREAD_ENV_VARS} == {"3"} and env[threads.ENV_THREADS] == "3"
    assert threads.from_env({"FORECAST_THREADS": "x"}) is None and threads.from_env({}) is None


def test_scheduler_gives_cpu_jobs_their_share_and_gpu_jobs_one() -> None:
    sched = Scheduler(cpu_slots=2, cores=16)
    for _ in range(3):
        sched.push(JobSpec.create("baseline", ["AAPL"]))
    sched.push(JobSpec.create("baseline", ["AAPL"], resources=Resources(gpus=1, vram_gb=1)))
    admitted = sched.admit(FakeGpuSource(1, 80.0).snapshot())
    by_kind = sorted((p.gpu is not None, p.threads) for _, p in admitted)
    assert by_kind == [(False, 8), (False, 8), (True, 1)]
    total = sum(p.threads for p in sched.running.values() if p.gpu is None)
    assert total <= 16


@pytest.mark.asyncio
async def test_a_worker_runs_with_its_share_of_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real worker process: torch's pool and OMP_NUM_THREADS are the slot's share, not the machine's."""
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    ws = tmp_path / "ws"
    store = Store.open(ws, fsync=False)
    eng = Engine(ws, store=store, cpu_slots=2, poll_interval=0.02, validate_symbols=False,
                 gpu_source=FakeGpuSource(0))
    await eng.start()
    try:
        st = eng.submit(JobSpec.create("baseline", ["AAPL"], params={"_test": {"probe": True}}))
        await wait_for(lambda: st.finished, 60, "the probe job")
        assert st.state == "succeeded", st.reason
        seen: dict[str, Any] = st.result_summary or {}
        want = threads.share(2)
        assert seen["torch_threads"] == want and seen["omp_threads"] == str(want)
    finally:
        await eng.stop(cancel_running=True)
        store.close()
