"""Admission uses measured peaks: from the estimate to the measurement, on a fake GPU and on CPU RAM.

The scheduler is driven with FakeGpuSource telemetry (its used memory follows the jobs admitted to
it); the peaks are what workers report (`engine.vram.PeakUsage`). The engine test runs real worker
processes and checks that their measured peaks reach the workspace's peak book and the job record.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.gpu import FakeGpuSource, Telemetry
from engine.jobs import JobSpec
from engine.peaks import MARGIN, PEAKS_FILE, PeakBook, PeakUsage
from engine.scheduler import Scheduler
from engine.vram import PeakMeter, footprint_key
from tests.helpers import wait_for

TRAIN = {"preset": "pretrained", "batch_size": 16, "context": 512}


def _train(vram_gb: float, **params: object) -> JobSpec:
    return JobSpec.create("train", ["SPY"], "toto", params={**TRAIN, **params},
                          resources={"gpus": 1, "vram_gb": vram_gb})


def _admit_all(sched: Scheduler, src: FakeGpuSource, specs: list[JobSpec]) -> list[tuple[str, float, str]]:
    for s in specs:
        sched.push(s)
    out = []
    for spec, pl in sched.admit(src.snapshot()):
        src.note_job(spec.id, pl.gpu, pl.vram_gb)
        out.append((spec.id, pl.vram_gb, pl.source))
    return out


def test_gpu_admission_moves_from_the_estimate_to_the_measured_peak() -> None:
    src = FakeGpuSource(1, total_gb=24.0, base_used_gb=0.5)  # 24 - 0.5 - 2 reserve = 21.5 GB of room
    sched = Scheduler(cpu_slots=2)
    first = _admit_all(sched, src, [_train(10.0) for _ in range(4)])
    assert [(v, s) for _, v, s in first] == [(10.0, "estimate")] * 2  # the guess: two fit, two wait
    for jid, _, _ in first:
        sched.release(jid)
        src.forget_job(jid)
    assert len(sched) == 2  # the two that waited are still queued
    key = footprint_key(_train(10.0), on_gpu=True)
    assert key == "train|toto|pretrained|b16|c512|bf16"
    sched.peaks.record(PeakUsage(key=key, device="cuda:0", peak_nvml_gb=4.0, peak_torch_reserved_gb=3.6))
    second = _admit_all(sched, src, [_train(10.0), _train(10.0)])
    assert [(v, s) for _, v, s in second] == [(round(4.0 * MARGIN, 3), "measured")] * 4  # all four now fit
    # a different footprint (another context) has no measurement: its estimate still rules
    for jid, _, _ in second:
        sched.release(jid)
        src.forget_job(jid)
    sched.push(_train(10.0, context=1024))
    (spec, pl), = sched.admit(src.snapshot())
    assert (spec.params["context"], pl.vram_gb, pl.source) == (1024, 10.0, "estimate")


def test_a_measured_peak_larger_than_the_guess_holds_jobs_back() -> None:
    src = FakeGpuSource(1, total_gb=24.0, base_used_gb=0.5)
    sched = Scheduler(cpu_slots=2)
    key = footprint_key(_train(2.0), on_gpu=True)
    sched.peaks.record({"key": key, "device": "cuda:0", "peak_torch_reserved_gb": 11.5})  # + 0.5 CUDA context
    admitted = _admit_all(sched, src, [_train(2.0) for _ in range(4)])
    assert [(v, s) for _, v, s in admitted] == [(round(12.0 * MARGIN, 3), "measured")]  # the guess said 4
    assert len(sched) == 3


def test_cpu_jobs_are_admitted_by_measured_rss_against_free_ram() -> None:
    sched = Scheduler(cpu_slots=4)
    t = Telemetry(ram_used_gb=10.0, ram_total_gb=16.0)  # 6 GB free, 1 GB reserve -> 5 GB of room
    specs = [JobSpec.create("validate", ["SPY"], "chronos2", params={"preset": "pretrained"}) for _ in range(3)]
    for s in specs:
        sched.push(s)
    assert len(sched.admit(t)) == 3  # nothing measured: slots decide
    for s in specs:
        sched.release(s.id)
    sched.peaks.record(PeakUsage(key=footprint_key(specs[0], on_gpu=False), peak_rss_gb=2.0))
    again = [JobSpec.create("validate", ["SPY"], "chronos2", params={"preset": "pretrained"}) for _ in range(3)]
    for s in again:
        sched.push(s)
    got = sched.admit(t)
    assert [p.rss_gb for _, p in got] == [round(2.0 * MARGIN, 3)] * 2  # 2 × 2.2 GB fit in 5, the third waits
    # a job larger than the free RAM still runs when it would be alone
    for s, _ in got:
        sched.release(s.id)
    sched.peaks.record(PeakUsage(key=footprint_key(specs[0], on_gpu=False), peak_rss_gb=40.0))
    (alone,) = sched.admit(t)
    assert alone[1].rss_gb == 44.0


def test_peak_book_persists_and_ignores_malformed_records(tmp_path: Path) -> None:
    path = tmp_path / PEAKS_FILE
    book = PeakBook(path)
    assert book.record({"key": "x", "peak_rss_gb": "lots"}) is None
    assert book.record({"key": "x", "unknown_field": 1}) is None
    assert book.record(None) is None
    for gb in (1.0, 3.0, 2.0):
        book.record(PeakUsage(key="k", peak_rss_gb=gb, peak_nvml_gb=gb * 2))
    book.save()
    again = PeakBook(path)
    assert again.measured("k") == (6.0, 3.0) and again.measured("x") == (None, None)
    path.write_text("{not json")
    assert PeakBook(path).measured("k") == (None, None)


def test_peak_meter_on_cpu_reports_this_process_rss_and_no_device_figures() -> None:
    u = PeakUsage.model_validate(PeakMeter("k", "cpu").start().stop())
    assert u.peak_rss_gb is not None and u.peak_rss_gb > 0.01
    assert u.peak_nvml_gb is None and u.peak_torch_allocated_gb is None and u.vram_gb is None


def test_engine_records_the_peaks_workers_measure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.controller import Engine
    from store import Store

    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    ws = tmp_path / "ws"

    async def scenario() -> list[dict]:
        store = Store.open(ws, fsync=False)
        eng = Engine(ws, store=store, poll_interval=0.02, validate_symbols=False, gpu_source=FakeGpuSource(0))
        await eng.start()
        try:
            spec = JobSpec.create("validate", ["SPY"], "toto", params={"preset": "tiny", "_test": {"steps": 1}})
            eng.submit(spec)
            await wait_for(lambda: all(j.finished for j in eng.jobs()), 30, "the job to finish")
            assert [j.state for j in eng.jobs()] == ["succeeded"]
        finally:
            await eng.stop()
            recs = store.jobs()
            store.close()
        return recs

    (rec,) = asyncio.run(scenario())
    usage = rec["result"]["usage"]
    assert usage["key"] == "validate|toto|tiny|b-|c-|fp32" and usage["peak_rss_gb"] > 0.01
    book = json.loads((ws / PEAKS_FILE).read_text())
    assert book["peaks"][usage["key"]][0]["rss_gb"] == usage["peak_rss_gb"]


def test_engine_reserves_the_recorded_peak_and_shows_it_on_the_job(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Peaks recorded by earlier jobs (peaks.json) decide a GPU job's reservation; the job state shows
    the estimate, the measurement and the reservation (what the console's GPU screen lists)."""
    from engine.controller import Engine
    from store import Store

    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    ws = tmp_path / "ws"
    spec = _train(10.0, _test={"steps": 1})
    book = PeakBook(ws / PEAKS_FILE)
    ws.mkdir()
    book.record(PeakUsage(key=footprint_key(spec, on_gpu=True), device="cuda:0", peak_nvml_gb=4.0))
    book.save()

    async def scenario() -> tuple[object, list[str]]:
        store = Store.open(ws, fsync=False)
        eng = Engine(ws, store=store, poll_interval=0.02, validate_symbols=False, gpu_source=FakeGpuSource(1, 24.0))
        await eng.start()
        try:
            eng.submit(spec)
            await wait_for(lambda: all(j.finished for j in eng.jobs()), 30, "the job to finish")
            return eng.job(spec.id), eng.log_tail(spec.id)
        finally:
            await eng.stop()
            store.close()

    st, logs = asyncio.run(scenario())
    assert st.state == "succeeded" and st.device == "cuda:0"
    assert (st.vram_gb, st.vram_measured_gb, st.vram_reserved_gb) == (10.0, 4.0, round(4.0 * MARGIN, 3))
    assert any("4.4 GB VRAM reserved (measured)" in line for line in logs), logs
    assert st.peak_rss_gb is not None and st.peak_rss_gb > 0.01
