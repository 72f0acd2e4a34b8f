"""Warm workers (engine.backends.pool): real engine, real pooled worker processes, test-hook jobs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine import threads
from engine.backends import backend_from_env
from engine.backends.local import LocalBackend
from engine.backends.pool import PooledBackend
from engine.controller import Engine
from engine.jobs import JobSpec
from engine.process_state import MUTATE_SEED
from tests.helpers import engines, wait_for


def job(kind: str = "baseline", **hook: Any) -> JobSpec:
    return JobSpec.create(kind, ["AAPL"], params={"_test": hook})


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    monkeypatch.delenv("FORECAST_TEST_MARKER", raising=False)
    return tmp_path / "ws"


@pytest.fixture
async def engine(ws: Path) -> AsyncIterator[Callable[..., Any]]:
    async with engines(ws, backend=PooledBackend) as make:  # the pool even in the FORECAST_WARM=0 run
        yield make


def pooled(ws: Path, job_id: str) -> bool:
    return bool(json.loads((ws / "jobs" / job_id / "pid.json").read_text()).get("pooled"))


@pytest.mark.asyncio
async def test_next_job_in_the_same_worker_sees_default_state(engine: Any, ws: Path) -> None:
    """A job that changes threads, seeds, env, cwd and grad mode; the next one in that worker sees none of it."""
    import numpy as np
    import torch

    eng: Engine = await engine(cpu_slots=1)
    a = eng.submit(job(mutate=True, probe=True))
    b = eng.submit(job(probe=True))
    await wait_for(lambda: a.finished and b.finished, 60, "both jobs")
    assert a.state == b.state == "succeeded", (a.reason, b.reason)
    sa, sb = a.result_summary or {}, b.result_summary or {}
    assert a.pid == b.pid and pooled(ws, b.id)  # the same warm process ran both
    assert sa["marker"] == "left-behind" and sa["grad_enabled"] is False and sa["cwd"] == "/"  # mutate took effect
    assert sb["marker"] is None and sb["grad_enabled"] is True and sb["cwd"] == os.getcwd()
    assert sb["torch_threads"] == threads.share(1) != sa["torch_threads"]
    np.random.seed(MUTATE_SEED)
    torch.manual_seed(MUTATE_SEED)
    seeded_np, seeded_torch = float(np.random.random()), float(torch.rand(1).item())
    assert sa["np_draw"] == seeded_np and sa["torch_draw"] == seeded_torch
    assert sb["np_draw"] != seeded_np and sb["torch_draw"] != seeded_torch


@pytest.mark.asyncio
async def test_a_fresh_workers_first_job_runs_alone_with_the_preloaded_modules(engine: Any) -> None:
    """No import runs beside a job in its worker: the first job of a new worker finds the preload done
    (the modules loaded) and no other thread but its own heartbeat and cancel watcher. A preload in a
    background thread raced the first job's own imports (a Kronos validate failed in transformers'
    lazy import, ModuleNotFoundError 'BloomPreTrainedModel')."""
    from engine.pool_worker import PRELOAD

    backend = PooledBackend()
    eng: Engine = await engine(cpu_slots=1, backend=backend)
    first = eng.submit(job(probe=True))
    await wait_for(lambda: first.finished, 60, "the first job")
    assert first.state == "succeeded", first.reason
    seen = first.result_summary or {}
    assert backend.started == 1 and seen["threads"] == ["MainThread", "cancel-watch", "heartbeat"], seen["threads"]
    assert {m for m in PRELOAD if m.startswith("engine.")} <= set(seen["modules"])


@pytest.mark.asyncio
async def test_short_jobs_share_warm_workers_and_train_does_not(engine: Any, ws: Path) -> None:
    backend = PooledBackend()
    eng: Engine = await engine(cpu_slots=2, backend=backend)
    specs = [job(steps=1) for _ in range(6)]
    states = [eng.submit(s) for s in specs]
    await wait_for(lambda: all(s.finished for s in states), 60, "six short jobs")
    assert {s.state for s in states} == {"succeeded"}
    assert len({s.pid for s in states}) <= 2 and backend.started <= 2
    for s in states:  # the job folder is exactly that of a one-process job
        files = {p.name for p in (ws / "jobs" / s.id).iterdir()}
        assert {"spec.json", "events.jsonl", "exit.json", "pid.json", "stderr.log"} <= files
    train = eng.submit(JobSpec.create("train", ["AAPL"], model="toto", params={"_test": {"steps": 1}}))
    await wait_for(lambda: train.finished, 30, "train job")
    assert train.state == "succeeded" and not pooled(ws, train.id)
    assert train.pid not in {s.pid for s in states}


@pytest.mark.asyncio
async def test_cancel_ends_the_job_and_its_worker_is_replaced(engine: Any, ws: Path) -> None:
    eng: Engine = await engine(cpu_slots=1)
    st = eng.submit(job(steps=1000, sleep=0.05, child=True))
    child_file = ws / "jobs" / st.id / "child.pid"
    await wait_for(lambda: child_file.exists() and st.progress_done >= 1, 30, "pooled job running")
    worker, child = psutil.Process(st.pid), psutil.Process(int(child_file.read_text()))
    eng.cancel(st.id)
    await wait_for(lambda: st.state == "cancelled", 3.0, "cancelled")
    await asyncio.to_thread(psutil.wait_procs, [worker, child], 2.0)
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    nxt = eng.submit(job(steps=1))
    await wait_for(lambda: nxt.finished, 30, "next job")
    assert nxt.state == "succeeded" and nxt.pid != st.pid


@pytest.mark.asyncio
async def test_sigkill_of_a_pooled_worker_fails_only_its_job(engine: Any, ws: Path) -> None:
    eng: Engine = await engine(cpu_slots=2)
    victim = eng.submit(job(steps=400, sleep=0.05))
    other = eng.submit(job(steps=30, sleep=0.05))
    await wait_for(lambda: victim.progress_done >= 1 and other.progress_done >= 1, 30, "both running")
    assert victim.pid != other.pid and pooled(ws, victim.id)
    os.kill(victim.pid, signal.SIGKILL)
    await wait_for(lambda: victim.state == "failed", 10, "victim failed")
    assert victim.reason == "killed by signal SIGKILL (9)" and victim.exit_code == -9
    await wait_for(lambda: other.finished, 30, "the other job")
    assert other.state == "succeeded"
    after = eng.submit(job(steps=1))
    await wait_for(lambda: after.finished, 30, "a job after the crash")
    assert after.state == "succeeded" and after.pid != victim.pid


ENGINE_SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path
from engine.backends.pool import PooledBackend
from engine.controller import Engine
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec
from store import Store

async def main():
    ws = Path(sys.argv[1])
    store = Store.open(ws, fsync=False)
    eng = Engine(ws, store=store, backend=PooledBackend(), poll_interval=0.02, heartbeat_s=0.2,
                 validate_symbols=False, gpu_source=FakeGpuSource(0))
    await eng.start()
    st = eng.submit(JobSpec.create("validate", ["AAPL"], model="toto",
                                   params={"_test": {"steps": 30, "sleep": 0.1, "result": {"summary": {"ok": 1}}}}))
    while st.progress_done < 2:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # let the store catch up
    print(json.dumps({"id": st.id, "pid": st.pid}), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_engine_killed_with_a_pooled_job_running_recovers_it(engine: Any, ws: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", ENGINE_SCRIPT, str(ws)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)  # type: ignore[union-attr]
        info = json.loads(line)
    finally:
        proc.kill()
        proc.wait()
    assert pooled(ws, info["id"]) and psutil.pid_exists(info["pid"])  # the warm worker outlives its engine
    eng: Engine = await engine()
    st = eng.job(info["id"])
    assert st is not None and st.state == "running"
    await wait_for(lambda: st.finished, 30, "the re-attached job")
    assert st.state == "succeeded" and (st.result_summary or {}).get("ok") == 1
    assert st.progress_done == 30


def test_no_warm_switches_the_pool_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORECAST_BACKEND", raising=False)
    monkeypatch.setenv("FORECAST_WARM", "0")
    off = backend_from_env(tmp_path)
    assert isinstance(off, LocalBackend) and not isinstance(off, PooledBackend)
    monkeypatch.setenv("FORECAST_WARM", "1")
    assert isinstance(backend_from_env(tmp_path), PooledBackend)
    from console.cli import _apply_global_env, build_parser

    monkeypatch.setenv("FORECAST_BACKEND", "local")  # restored after the test, like FORECAST_WARM
    _apply_global_env(build_parser().parse_args(["--no-warm", "jobs"]))
    assert os.environ["FORECAST_WARM"] == "0"


@pytest.mark.asyncio
async def test_idle_workers_are_closed_after_the_idle_time(engine: Any) -> None:
    backend = PooledBackend(idle_s=0.0)
    eng: Engine = await engine(backend=backend)
    st = eng.submit(job(steps=1))
    await wait_for(lambda: st.finished, 30, "the job")
    worker = psutil.Process(st.pid)
    backend.reap()  # idle longer than 0 s: closed (end of stdin), the process exits by itself
    await asyncio.to_thread(worker.wait, 10)
    assert backend.workers() == []


def test_gpu_admission_counts_a_warm_workers_resident_vram() -> None:
    """An idle warm worker's CUDA context and cached models are used memory in NVML: a job that would
    fit the empty card waits, one that fits beside the worker starts; a job running in the worker is
    credited with the worker's memory, so its promise is not counted twice."""
    from engine.gpu import GpuInfo, Telemetry
    from engine.scheduler import Scheduler

    worker_pid = 4242
    tel = Telemetry(gpus=[GpuInfo(index=0, mem_used_gb=30.0, mem_total_gb=80.0, processes=[(worker_pid, 30.0)])],
                    available=True)
    sched = Scheduler(cpu_slots=2, vram_reserve_gb=2.0)
    big = JobSpec.create("validate", ["AAPL"], model="toto", resources={"gpus": 1, "vram_gb": 60})
    sched.push(big)
    assert sched.admit(tel) == []  # 80 - 30 resident - 2 reserve < 60
    small = JobSpec.create("validate", ["AAPL"], model="toto", resources={"gpus": 1, "vram_gb": 10})
    sched.remove(big.id)
    sched.push(small)
    [(spec, placement)] = sched.admit(tel, owns=lambda job_id, pid: pid == worker_pid)
    assert spec.id == small.id and placement.gpu == 0
    sched.push(big)  # the small job runs in the warm worker: its 10 GB are inside the worker's 30 GB
    assert sched.admit(tel, owns=lambda job_id, pid: job_id == small.id and pid == worker_pid) == []
    tel.gpus[0].mem_total_gb = 100.0  # 100 - 30 - 2 = 68 free: the 60 GB job fits; no promise counted twice
    assert [s.id for s, _ in sched.admit(tel, owns=lambda job_id, pid: job_id == small.id and pid == worker_pid)] \
        == [big.id]
