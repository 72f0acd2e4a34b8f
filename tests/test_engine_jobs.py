"""The engine with real worker subprocesses (scripted through the FORECAST_TEST_HOOKS test hook)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.controller import Engine
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec, JobSpecError, Resources
from engine.scheduler import Placement
from engine.state import JobUpdate
from tests.helpers import engines, wait_for

pytestmark = pytest.mark.asyncio


def hook(**kw: Any) -> dict[str, Any]:
    return {"_test": kw}


def mkspec(priority: int = 0, vram: float = 0.0, gpus: float = 0.0, **kw: Any) -> JobSpec:
    return JobSpec.create("baseline", ["AAPL"], params=hook(**kw), priority=priority,
                          resources=Resources(gpus=gpus, vram_gb=vram))


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    return tmp_path / "ws"


@pytest.fixture
async def engine_factory(ws: Path) -> AsyncIterator[Callable[..., Any]]:
    async with engines(ws) as make:
        yield make


async def test_job_runs_streams_and_is_recorded(engine_factory: Any, ws: Path) -> None:
    eng: Engine = await engine_factory()
    q = eng.subscribe()
    result = {"runs": [{"model": "naive", "symbol": "AAPL", "hyperparams": {"method": "persistence"},
                        "metrics": {"val_mae_pct": 3.5}}],
              "summary": {"best": "naive"}}
    st = eng.submit(mkspec(steps=4, sleep=0.02, result=result))
    await wait_for(lambda: st.state == "succeeded", what="success")
    assert st.progress_done == 4 and st.progress_total == 4 and st.exit_code == 0
    assert [p["step"] for p in eng.curve(st.id)] == [1, 2, 3, 4]
    assert st.last_train_loss == pytest.approx(0.25) and st.result_summary == {"best": "naive"}
    kinds: list[str] = []
    while not q.empty():
        u: JobUpdate = q.get_nowait()
        kinds.append(u.kind)
    assert {"state", "progress", "loss", "result"} <= set(kinds)
    await eng.stop()
    store = eng.store
    rec = store.get_job(st.id)
    assert rec["state"] == "succeeded" and rec["attempt"] == 1 and len(rec["run_ids"]) == 1
    runs = store.runs(model="naive", symbol="AAPL")
    assert len(runs) == 1 and runs[0]["metrics"]["val_mae_pct"] == 3.5
    assert any("started on cpu" in line for line in eng.log_tail(st.id))


async def test_sigkill_marks_failed_and_next_queued_starts(engine_factory: Any, ws: Path) -> None:
    eng: Engine = await engine_factory(cpu_slots=1)
    victim = eng.submit(mkspec(steps=200, sleep=0.05))
    nxt = eng.submit(mkspec(steps=1))
    await wait_for(lambda: victim.state == "running" and victim.pid is not None and victim.progress_done >= 1)
    assert nxt.state == "queued"
    os.kill(victim.pid, signal.SIGKILL)
    await wait_for(lambda: victim.state == "failed", what="victim failed")
    assert victim.reason == "killed by signal SIGKILL (9)" and victim.exit_code == -9
    await wait_for(lambda: nxt.state == "succeeded", what="next job ran")


@pytest.mark.parametrize("crash,expect", [
    ("segv", "killed by signal SIGSEGV (11)"),
    ("exit3", "exit code 3"),
    ("raise", "RuntimeError: test hook asked to raise (exit code 1)"),
])
async def test_crashes_are_failures_with_reason(engine_factory: Any, crash: str, expect: str) -> None:
    eng: Engine = await engine_factory()
    st = eng.submit(mkspec(steps=2, crash=crash))
    await wait_for(lambda: st.state == "failed", what=f"{crash} failure")
    assert st.reason == expect


async def test_stderr_tail_is_kept_on_failure(engine_factory: Any) -> None:
    eng: Engine = await engine_factory()
    st = eng.submit(mkspec(steps=2, crash="exit3", stderr="Fatal: out of memory"))
    await wait_for(lambda: st.state == "failed")
    assert st.reason == "exit code 3"
    assert st.stderr_tail is not None and "Fatal: out of memory" in st.stderr_tail
    assert any("Fatal: out of memory" in line for line in eng.log_tail(st.id))
    ok = eng.submit(mkspec(steps=1))
    await wait_for(lambda: ok.state == "succeeded")
    assert ok.stderr_tail is None


async def test_cancel_running_job_ends_it_and_its_children_quickly(engine_factory: Any, ws: Path) -> None:
    eng: Engine = await engine_factory(cancel_grace_s=1.5)
    st = eng.submit(mkspec(steps=1000, sleep=0.05, child=True))
    child_file = ws / "jobs" / st.id / "child.pid"
    await wait_for(lambda: child_file.exists() and st.state == "running", what="child spawned")
    child = psutil.Process(int(child_file.read_text()))
    worker = psutil.Process(st.pid)
    eng.cancel(st.id)
    # Left alone the job runs 50 s; the bound only has to tell "cancelled" from "ran on" on a loaded machine.
    await wait_for(lambda: st.state == "cancelled", timeout=15.0, what="cancelled, well before the job's 50 s")
    await asyncio.to_thread(psutil.wait_procs, [child, worker], 5.0)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    assert st.reason == "cancelled by user"


async def test_cancel_escalates_to_sigkill_when_the_task_ignores_it(engine_factory: Any) -> None:
    eng: Engine = await engine_factory(cancel_grace_s=0.4)
    st = eng.submit(mkspec(steps=1, ignore_term=True))
    await wait_for(lambda: st.state == "running" and st.progress_done >= 1)
    eng.cancel(st.id)
    await wait_for(lambda: st.state == "cancelled", timeout=3.0)


async def test_cancel_queued_retry_priority_and_bad_calls(engine_factory: Any) -> None:
    eng: Engine = await engine_factory(cpu_slots=1)
    blocker = eng.submit(mkspec(steps=50, sleep=0.02))
    await wait_for(lambda: blocker.state == "running")
    a = eng.submit(mkspec(steps=1))
    b = eng.submit(mkspec(steps=1))
    eng.set_priority(b.id, 10)
    assert [s.id for s in eng.queued()] == [b.id, a.id]
    eng.cancel(a.id)
    assert a.state == "cancelled" and a.reason == "cancelled while queued"
    with pytest.raises(JobSpecError, match="already cancelled"):
        eng.cancel(a.id)
    with pytest.raises(JobSpecError, match="only finished"):
        eng.retry(b.id)
    with pytest.raises(JobSpecError, match="no such job"):
        eng.cancel("nope")
    with pytest.raises(JobSpecError, match="only queued"):
        eng.set_priority(blocker.id, 3)
    again = eng.retry(a.id)
    assert again.attempt == 2 and again.parent == a.id and eng.spec(again.id).params == eng.spec(a.id).params
    await wait_for(lambda: again.state == "succeeded" and b.state == "succeeded", timeout=15)
    assert b.started_at is not None and again.started_at is not None and b.started_at < again.started_at


async def test_24_jobs_on_2_cpu_slots_in_priority_order(engine_factory: Any) -> None:
    eng: Engine = await engine_factory(cpu_slots=2)
    q = eng.subscribe()
    specs = [mkspec(priority=i % 4, steps=1) for i in range(24)]
    states = [eng.submit(s) for s in specs]
    max_running = 0
    starts: list[str] = []
    deadline = time.monotonic() + 40
    while not all(s.finished for s in states):
        assert time.monotonic() < deadline, "24 jobs did not finish"
        max_running = max(max_running, eng.running_count())
        while not q.empty():
            u = q.get_nowait()
            if u.kind == "state" and u.data.get("state") == "running" and "device" in u.data:
                starts.append(u.job_id)
        await asyncio.sleep(0.005)
    while not q.empty():
        u = q.get_nowait()
        if u.kind == "state" and u.data.get("state") == "running" and "device" in u.data:
            starts.append(u.job_id)
    assert max_running <= 2
    assert all(s.state == "succeeded" for s in states)
    expected = [s.id for s in sorted(specs, key=lambda s: -s.priority)]  # stable sort = FIFO within
    assert starts == expected


async def test_fake_gpus_pack_two_30gb_jobs_per_80gb_gpu(engine_factory: Any) -> None:
    src = FakeGpuSource(2, 80.0)
    eng: Engine = await engine_factory(gpu_source=src, cpu_slots=2)
    states = [eng.submit(mkspec(gpus=1, vram=30, steps=6, sleep=0.05)) for _ in range(6)]
    peak = 0
    peak_per_gpu: dict[str, int] = {}
    while not all(s.finished for s in states):
        running = [s for s in states if s.state == "running"]
        peak = max(peak, len(running))
        for dev in {s.device for s in running}:
            peak_per_gpu[dev] = max(peak_per_gpu.get(dev, 0), sum(1 for s in running if s.device == dev))
        for g in src.snapshot().gpus:
            assert g.mem_used_gb is not None and g.mem_used_gb <= 80.0 - 2.0
        await asyncio.sleep(0.01)
    assert all(s.state == "succeeded" for s in states)
    assert peak == 4 and peak_per_gpu == {"cuda:0": 2, "cuda:1": 2}
    with pytest.raises(JobSpecError, match="largest GPU"):
        eng.submit(mkspec(gpus=1, vram=79))


async def test_worker_env_narrows_cuda_devices(engine_factory: Any) -> None:
    src = FakeGpuSource(2, 80.0)
    eng: Engine = await engine_factory(gpu_source=src)
    st = eng.submit(mkspec(gpus=1, vram=10, steps=1))
    await wait_for(lambda: st.finished)
    env = eng.worker_env(Placement(gpu=1, vram_gb=10))
    assert env["CUDA_VISIBLE_DEVICES"] == src.uuids[1] and env["FORECAST_DEVICE"] == "cuda"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    cpu_env = eng.worker_env(Placement(gpu=None))
    assert cpu_env["CUDA_VISIBLE_DEVICES"] == "" and cpu_env["FORECAST_DEVICE"] == "cpu"
    assert st.device == "cuda:0" and st.state == "succeeded"


async def test_symbols_are_validated_against_the_data_folders(engine_factory: Any, ws: Path,
                                                               tmp_path: Path, monkeypatch: Any) -> None:
    data = tmp_path / "data"
    data.mkdir()
    rows = "\n".join(f"2024-01-{d:02d},{100 + d},{101 + d},{99 + d},{100.5 + d},1000" for d in range(1, 29))
    (data / "AAPL.csv").write_text("timestamp,open,high,low,close,volume\n" + rows + "\n")
    monkeypatch.setenv("FORECAST_DATA", str(data))
    eng: Engine = await engine_factory(validate_symbols=True)
    with pytest.raises(JobSpecError, match="unknown symbol"):
        eng.submit(JobSpec.create("baseline", ["MSFT"], params=hook(steps=1)))
    assert eng.jobs() == [] and not any((ws / "jobs").glob("*/spec.json"))
    st = eng.submit(mkspec(steps=1))
    await wait_for(lambda: st.state == "succeeded")

