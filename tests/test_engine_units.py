"""Engine pieces without subprocesses: queue order, VRAM admission, state folding, GPU telemetry."""

from __future__ import annotations

import pytest

from engine.events import EventWriter, read_events
from engine.gpu import FakeGpuSource, GpuInfo, NvmlSource, Telemetry, _safe, detect_source
from engine.jobs import JobSpec, JobSpecError, Resources
from engine.scheduler import Scheduler
from engine.state import JobState, apply_event, where_words


def spec(priority: int = 0, vram: float = 0.0, gpus: float = 0.0, sym: str = "AAPL") -> JobSpec:
    return JobSpec.create("baseline", [sym], priority=priority, resources=Resources(gpus=gpus, vram_gb=vram))


def test_priority_order_fifo_within_priority_and_reprioritise() -> None:
    s = Scheduler(cpu_slots=1)
    a, b, c, d = spec(0), spec(5), spec(0), spec(5)
    for x in (a, b, c, d):
        s.push(x)
    assert [x.id for x in s.queued()] == [b.id, d.id, a.id, c.id]
    s.set_priority(c.id, 9)
    assert [x.id for x in s.queued()] == [c.id, b.id, d.id, a.id]
    got = s.admit(None)
    assert [x.id for x, _ in got] == [c.id]  # one CPU slot
    assert s.admit(None) == []  # slot still taken
    s.release(c.id)
    assert [x.id for x, _ in s.admit(None)] == [b.id]
    with pytest.raises(JobSpecError):
        s.push(b)  # already running


def test_cpu_slots_and_gpu_jobs_without_gpus_use_cpu_slots() -> None:
    s = Scheduler(cpu_slots=2)
    for _ in range(5):
        s.push(spec(gpus=1, vram=10))
    tel = Telemetry(available=False, message="no GPU")
    got = s.admit(tel)
    assert len(got) == 2 and all(p.gpu is None and p.device == "cpu" for _, p in got)


def test_vram_packing_two_gpus_of_80gb_fit_two_30gb_jobs_each() -> None:
    src = FakeGpuSource(2, 80.0, base_used_gb=0.0)
    s = Scheduler(cpu_slots=2, vram_reserve_gb=2.0)
    jobs = [spec(gpus=1, vram=30) for _ in range(6)]
    for j in jobs:
        s.push(j)
    got = s.admit(src.snapshot())
    assert len(got) == 4
    per_gpu = {0: 0, 1: 0}
    pids: dict[str, int] = {}
    for n, (j, p) in enumerate(got):
        per_gpu[p.gpu] += 1  # type: ignore[index]
        pids[j.id] = 1000 + n
        src.note_job(j.id, p.gpu, p.vram_gb, pid=pids[j.id])  # type: ignore[arg-type]
    assert per_gpu == {0: 2, 1: 2}

    def owns(jid: str, pid: int) -> bool:
        return pids.get(jid) == pid

    # NVML now shows them (and whose they are); nothing more fits until one ends.
    assert s.admit(src.snapshot(), owns=owns) == []
    done = got[0][0]
    s.release(done.id)
    src.forget_job(done.id)
    again = s.admit(src.snapshot(), owns=owns)
    assert len(again) == 1 and again[0][1].gpu == got[0][1].gpu


def test_promised_vram_counts_until_nvml_shows_it() -> None:
    """A job admitted but not yet visible in NVML still holds its promise (no over-packing)."""
    src = FakeGpuSource(1, 80.0, base_used_gb=0.0)
    s = Scheduler(vram_reserve_gb=2.0)
    a, b, c = spec(gpus=1, vram=30), spec(gpus=1, vram=30), spec(gpus=1, vram=30)
    s.push(a)
    assert len(s.admit(src.snapshot())) == 1  # NVML still says 0 used
    s.push(b)
    s.push(c)
    got = s.admit(src.snapshot(), owns=lambda jid, pid: False)
    assert [x.id for x, _ in got] == [b.id]  # 80-2-30(promised) = 48 -> one more, not two


def test_big_job_waits_and_blocks_smaller_gpu_jobs_behind_it() -> None:
    src = FakeGpuSource(1, 24.0, base_used_gb=0.0)
    s = Scheduler(vram_reserve_gb=2.0)
    small = spec(priority=5, gpus=1, vram=8)
    big = spec(priority=3, gpus=1, vram=20)
    later = spec(priority=1, gpus=1, vram=4)
    cpu = spec(priority=0)
    for x in (small, big, later, cpu):
        s.push(x)
    got = s.admit(src.snapshot())
    assert {x.id for x, _ in got} == {small.id, cpu.id}  # big waits; `later` may not jump it
    s.check_fits(big, src.snapshot())
    with pytest.raises(JobSpecError, match="largest GPU"):
        s.check_fits(spec(gpus=1, vram=23), src.snapshot())


def test_fake_gpu_source_is_deterministic_and_tracks_jobs() -> None:
    src = FakeGpuSource(2, 80.0)
    assert src.snapshot() == src.snapshot()
    src.note_job("j", 1, 30.0, pid=42)
    t = src.snapshot()
    assert t.gpus[1].mem_used_gb == pytest.approx(30.5) and t.gpus[1].processes == [(42, 30.0)]
    assert t.gpus[0].processes == [] and t.available


def test_nvml_absent_gives_unavailable_with_message_and_host_figures() -> None:
    src = NvmlSource()  # no driver on this machine
    t = src.snapshot()
    assert t.available is False and t.message
    assert t.ram_total_gb is not None and t.ram_total_gb > 0
    assert detect_source().snapshot().available is False
    assert _safe(lambda: 1 / 0) is None
    assert GpuInfo(index=0, mem_used_gb=None, mem_total_gb=8).mem_free_gb is None


def test_apply_event_folds_a_worker_stream(tmp_path) -> None:
    s = spec()
    w = EventWriter(tmp_path / "events.jsonl", s.id)
    w.started()
    w.progress(1, 4, eta_s=3.0, stage="fit")
    w.loss(1, 0, 0.9, 1.1)
    w.loss(2, 0, float("nan"))
    w.metric("mae", 1.5)
    w.error(RuntimeError("boom"))
    w.heartbeat()
    w.result({"summary": {"ok": 1}})
    w.close()
    st = JobState.from_spec(s)
    kinds = []
    for ev in read_events(tmp_path / "events.jsonl").events:
        kinds += [u.kind for u in apply_event(st, ev)]
    assert kinds == ["state", "progress", "loss", "loss", "metric", "log", "result"]
    assert st.state == "running" and st.progress_total == 4 and st.stage == "fit"
    assert st.last_train_loss == 0.9 and st.last_val_loss == 1.1  # NaN became null, ignored
    assert st.reason == "RuntimeError: boom" and st.metrics == {"mae": 1.5}
    assert st.result_summary == {"ok": 1}
    assert JobState.from_record(st.to_record()) == st


def test_loss_and_progress_events_say_which_symbol_run_and_epoch(tmp_path) -> None:
    s = spec()
    w = EventWriter(tmp_path / "events.jsonl", s.id)
    w.progress(1.5, 2, eta_s=9.0, stage="training", symbol="SPY", symbol_i=2, symbol_n=2, epoch_i=3, epoch_n=15)
    w.loss(4, 2, 0.5, symbol="SPY", run="toto-tiny-SPY-1")
    w.progress(2, 2, stage="scoring validation")  # where-fields left out: the last known ones stay
    w.close()
    st = JobState.from_spec(s)
    ups = [u for ev in read_events(tmp_path / "events.jsonl").events for u in apply_event(st, ev)]
    assert ups[1].data["symbol"] == "SPY" and ups[1].data["run"] == "toto-tiny-SPY-1"
    assert (st.symbol, st.symbol_i, st.symbol_n, st.epoch_i, st.epoch_n) == ("SPY", 2, 2, 3, 15)
    assert where_words(st) == "scoring validation · SPY 2/2 · epoch 3/15"
    assert JobState.from_record(st.to_record()) == st
    bare = JobState.from_spec(s)
    assert where_words(bare) == ""


def test_event_writer_refuses_reserved_field_names(tmp_path) -> None:
    w = EventWriter(tmp_path / "e.jsonl", "x")
    with pytest.raises(ValueError, match="may not be named"):
        w.emit("log", type="oops")
    w.close()


WORKER_WITH_MISSING_TASK = r"""
import importlib, sys
real = importlib.import_module
def fake(name, *a, **k):
    if name.startswith("engine.tasks.") and name != "engine.tasks.context":
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return real(name, *a, **k)
importlib.import_module = fake
from engine.worker import main
sys.exit(main([sys.argv[1]]))
"""


def test_worker_reports_a_missing_task_module_and_ignores_the_hook_without_env(tmp_path) -> None:
    """Without FORECAST_TEST_HOOKS=1 the `_test` param is inert: the real task is looked up."""
    import json
    import os
    import subprocess
    import sys

    job_dir = tmp_path / "ws" / "jobs" / "j"
    job_dir.mkdir(parents=True)
    s = JobSpec.create("train", ["AAPL"], model="toto", params={"_test": {"crash": "segv"}})
    s.write(job_dir)
    env = {k: v for k, v in os.environ.items() if k != "FORECAST_TEST_HOOKS"}
    r = subprocess.run([sys.executable, "-c", WORKER_WITH_MISSING_TASK, str(job_dir)], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    evs = read_events(job_dir / "events.jsonl").events
    assert [e["type"] for e in evs] == ["started", "error"]
    assert evs[-1]["exc_type"] == "RuntimeError"
    assert "no task module engine.tasks.train" in evs[-1]["msg"]
    assert json.loads((job_dir / "exit.json").read_text())["code"] == 1


#: A worker whose final event lingers 50 ms after it is written, as a loaded machine may make it:
#: a heartbeat thread still running then (every 5 ms here) would write after it.
WORKER_WITH_SLOW_FINAL_EVENT = r"""
import sys, time
from engine.events import EventWriter
for name in ("result", "error"):
    def lingering(self, *a, _write=getattr(EventWriter, name), **k):
        _write(self, *a, **k)
        time.sleep(0.05)
    setattr(EventWriter, name, lingering)
from engine.worker import main
sys.exit(main([sys.argv[1]]))
"""


@pytest.mark.parametrize("hook, code, final", [({"steps": 3}, 0, "result"), ({"steps": 4, "crash": "raise"}, 1, "error")])
def test_the_final_event_is_the_last_line_a_worker_writes(tmp_path, hook, code, final) -> None:
    """Readers take a job's last event as its outcome: no heartbeat follows the result or the error."""
    import os
    import subprocess
    import sys

    job_dir = tmp_path / "ws" / "jobs" / "j"
    job_dir.mkdir(parents=True)
    JobSpec.create("baseline", ["AAPL"], params={"_test": hook}).write(job_dir)
    env = {**os.environ, "FORECAST_TEST_HOOKS": "1", "FORECAST_HEARTBEAT_S": "0.005"}
    r = subprocess.run([sys.executable, "-c", WORKER_WITH_SLOW_FINAL_EVENT, str(job_dir)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == code, r.stderr
    types = [e["type"] for e in read_events(job_dir / "events.jsonl").events]
    assert types[-1] == final and types.count(final) == 1, types


def test_read_events_skips_half_lines_and_flags_garbage(tmp_path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(b'{"type":"heartbeat","t":1}\nnot json\n[1]\n{"type":"log","msg":"x"}\n{"type":"he')
    c = read_events(p)
    assert [e["type"] for e in c.events] == ["heartbeat", "log", "log", "log"]
    assert "unreadable" in c.events[1]["msg"] and "unreadable" in c.events[2]["msg"]
    assert c.offset == p.read_bytes().rfind(b"\n") + 1
    assert read_events(p, c.offset).events == []


def test_workers_are_pinned_by_gpu_uuid_when_nvml_and_cuda_orders_differ() -> None:
    """A mixed two-GPU host: NVML (PCI bus order) lists the slow card first, CUDA's default order
    (fastest first) lists it second. The engine admits by NVML index; the worker must land on that
    very card under CUDA's rules, which a bare index would get wrong."""
    from engine.gpu import FakeGpuSource, pin_env

    nvml_order = ["GPU-slow-a100-0000", "GPU-fast-h100-0001"]  # NVML index 0, 1 (PCI bus order)
    cuda_fastest_first = ["GPU-fast-h100-0001", "GPU-slow-a100-0000"]
    src = FakeGpuSource(2, 80.0, uuids=nvml_order)
    tel = src.snapshot()

    def cuda_device(env: dict[str, str]) -> str:
        """Which physical card CUDA's device 0 is in a process with this environment (CUDA's rules:
        UUIDs name cards in any order; indices count in CUDA_DEVICE_ORDER, fastest-first by default)."""
        order = nvml_order if env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" else cuda_fastest_first
        first = env["CUDA_VISIBLE_DEVICES"].split(",")[0]
        return first if first.startswith("GPU-") else order[int(first)]

    for nvml_index, card in enumerate(nvml_order):
        env = pin_env(nvml_index, tel, hide_gpus=True)
        assert env["CUDA_VISIBLE_DEVICES"] == card and env["FORECAST_DEVICE"] == "cuda"
        assert cuda_device(env) == card
        assert cuda_device({"CUDA_VISIBLE_DEVICES": str(nvml_index)}) != card  # the defect a bare index had
    no_uuid = FakeGpuSource(2, 80.0, uuids=["", ""]).snapshot()  # NVML gave no UUID: index + PCI order
    env = pin_env(1, no_uuid, hide_gpus=True)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert cuda_device(env) == nvml_order[1]
    cpu = pin_env(None, tel, hide_gpus=True)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and cpu["FORECAST_DEVICE"] == "cpu"
