"""Event files of long jobs: rotated into compacted segments, read from logical offsets that survive
a rotation, torn last lines left for the next read; recovery reads a running job from the offset
its record holds. Real files, real EventWriter, a real engine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from engine import recovery
from engine.eventlog import live_base, read_events, segments
from engine.events import EventWriter, job_result
from engine.jobs import JobDir, JobSpec
from tests.helpers import wait_for

ROTATE = 2048


def _strip(evs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What history needs of each event, heartbeats left out (compaction keeps only some)."""
    return [(e["type"], e.get("step"), e.get("msg"), e.get("done"), e.get("kind"))
            for e in evs if e.get("type") != "heartbeat"]


def _long_job(w: EventWriter, n: int = 600) -> None:
    """A long job: mostly heartbeats, a loss point and progress every 20, a log line every 100."""
    w.started()
    for i in range(1, n + 1):
        w.heartbeat()
        if i % 20 == 0:
            w.loss(step=i, epoch=i // 100, train=1.0 / i, val=2.0 / i, symbol="SPY", run="r1")
            w.progress(i, n, stage="train")
        if i % 100 == 0:
            w.log(f"epoch {i // 100} done")
    w.artifact("checkpoint", "ckpt")
    w.result({"summary": {"steps": n}, "runs": []})


def test_a_long_jobs_file_stays_bounded_and_keeps_everything_history_needs(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path, "job-1", rotate_bytes=ROTATE)
    _long_job(w)
    w.close()
    raw = EventWriter(tmp_path / "raw.jsonl", "job-1", rotate_bytes=0)  # the same job, never rotated
    _long_job(raw)
    raw.close()
    whole = read_events(tmp_path / "raw.jsonl").events
    segs = segments(path)
    assert len(segs) >= 10 and path.stat().st_size <= ROTATE + 200  # rotated; the live file stays small
    disk = path.stat().st_size + sum(p.stat().st_size for _, p in segs)
    assert disk < (tmp_path / "raw.jsonl").stat().st_size / 3  # heartbeats no longer pile up
    got = read_events(path).events
    assert _strip(got) == _strip(whole)  # loss curve, progress, logs, artifact, result: all there, in order
    def losses(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "t"} for e in evs if e["type"] == "loss"]

    assert losses(got) == losses(whole)  # every field of every point (written a moment apart: t differs)
    assert sum(e["type"] == "heartbeat" for e in got) <= len(segs) + 1 + ROTATE // 60
    assert job_result(path) == {"summary": {"steps": 600}, "runs": []}
    assert not any(e["type"] == "segment" for e in got)


def test_offsets_survive_rotation_mid_read_and_limits_split_a_read_exactly(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path, "job-1", rotate_bytes=ROTATE)
    for i in range(15):
        w.loss(step=i, epoch=0, train=1.0)
    first = read_events(path)
    assert not segments(path) and [e["step"] for e in first.events] == list(range(15))
    for i in range(15, 400):  # several rotations while this reader holds an offset into the old live file
        w.heartbeat()
        w.loss(step=i, epoch=0, train=1.0)
    assert len(segments(path)) >= 3
    rest = read_events(path, first.offset)
    assert [e["step"] for e in rest.events if e["type"] == "loss"] == list(range(15, 400))
    assert read_events(path, rest.offset).events == []  # nothing read twice
    # A read up to a limit inside a segment, then on from its offset: each event exactly once.
    mid = (first.offset + rest.offset) // 2
    a = read_events(path, 0, mid)
    b = read_events(path, a.offset)
    assert a.offset <= mid
    assert [e["step"] for e in a.events + b.events if e["type"] == "loss"] == list(range(400))
    w.close()
    with open(segments(path)[0][1], "ab") as fh:  # a segment damaged on disk: the rest of it still reads
        fh.write(b'[12, {"type": "lo\n')
    assert [e["step"] for e in read_events(path).events if e["type"] == "loss"] == list(range(400))


def test_a_reader_tailing_while_the_writer_rotates_misses_and_repeats_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path, "job-1", rotate_bytes=1024)
    done = threading.Event()

    def write() -> None:
        for i in range(300):
            w.heartbeat()
            w.loss(step=i, epoch=0, train=1.0)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    seen: list[int] = []
    off = 0
    while True:  # tail as the engine does, on whatever the files hold at each read
        finished = done.is_set()
        chunk = read_events(path, off)
        off = chunk.offset
        seen += [e["step"] for e in chunk.events if e["type"] == "loss"]
        if finished:
            break
    t.join()
    w.close()
    assert seen == list(range(300))


def test_a_torn_last_line_waits_for_its_end_and_a_new_writer_does_not_glue_onto_it(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    w = EventWriter(path, "job-1", rotate_bytes=ROTATE)
    w.loss(step=1, epoch=0, train=1.0)
    w.close()
    with open(path, "ab") as fh:  # a worker killed halfway through a line
        fh.write(b'{"job":"job-1","t":1.0,"type":"loss","st')
    c = read_events(path)
    assert [e["step"] for e in c.events] == [1] and c.offset < path.stat().st_size
    assert read_events(path, c.offset).events == []  # still half a line: nothing, offset unchanged
    assert read_events(path, c.offset).offset == c.offset
    w2 = EventWriter(path, "job-1", rotate_bytes=ROTATE)  # the next writer of this file
    for i in range(2, 80):
        w2.loss(step=i, epoch=0, train=1.0)
    w2.close()
    assert segments(path)  # the torn line went through a rotation too
    rest = read_events(path, c.offset).events
    assert rest[0]["type"] == "log" and "unreadable event line" in rest[0]["msg"]
    assert [e["step"] for e in rest[1:]] == list(range(2, 80))  # none of the new events was lost


# ---- recovery from the recorded offset ----------------------------------------------------------

@pytest.mark.asyncio
async def test_recovery_reads_a_running_job_from_its_recorded_offset_across_a_rotation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.controller import Engine
    from engine.gpu import FakeGpuSource
    from engine.state import JobState, Status
    from store import Store
    from store.atomic import atomic_write_json

    ws = tmp_path / "ws"
    spec = JobSpec.create("baseline", ["AAPL"], params={"horizon": 8})
    jd = JobDir.of(ws, spec.id)
    jd.path.mkdir(parents=True)
    spec.write(jd.path)
    w = EventWriter(jd.events, spec.id, rotate_bytes=ROTATE)
    w.started()
    for i in range(1, 41):
        w.heartbeat()
        w.loss(step=i, epoch=0, train=1.0 / i)
        w.progress(i, 80)
    seen = read_events(jd.events)  # what the engine that died had read and recorded
    for i in range(41, 81):  # written while no engine watched; the live file rotates again
        w.heartbeat()
        w.loss(step=i, epoch=0, train=1.0 / i)
        w.progress(i, 80)
    run = {"model": "naive", "symbol": "AAPL", "hyperparams": {}, "metrics": {"val_mae_pct": 2.0}}
    w.result({"runs": [run], "summary": {"steps": 80}})
    w.close()
    with open(jd.events, "rb") as fh:
        assert live_base(fh)[0] > seen.offset  # the recorded offset now lies in a rotated segment
    atomic_write_json(jd.exit, {"code": 0})

    st = JobState.from_spec(spec)
    st.state, st.started_at, st.progress_done, st.progress_total = Status.RUNNING, 1.0, 40.0, 80.0
    store = Store.open(ws, fsync=False)
    rec = {**st.to_record(), "spec": spec.to_dict(), "events_offset": seen.offset, "checkpointed": False,
           "has_result": False, "job_dir": str(jd.path), "backend": "local"}
    store.put_job(rec)

    reads: list[tuple[int, int | None]] = []
    real = recovery.read_events

    def spy(path: Any, offset: int = 0, limit: int | None = None) -> Any:
        reads.append((offset, limit))
        return real(path, offset, limit)

    monkeypatch.setattr(recovery, "read_events", spy)
    eng = Engine(ws, store=store, poll_interval=0.02, validate_symbols=False, gpu_source=FakeGpuSource(0))
    await eng.start()
    try:
        job = eng.job(spec.id)
        assert job is not None
        await wait_for(lambda: job.state == "succeeded", what="the recovered job to be recorded")
        assert reads == [(seen.offset, None)]  # from the recorded offset, never from byte 0
        assert job.progress_done == 80
        curve = eng.curve(spec.id)  # history before the offset, read on demand, ahead of the rest
        assert [p["step"] for p in curve] == list(range(1, 81))
        assert reads[1:] == [(0, seen.offset)]
        await eng.stop()
        assert len(store.runs(model="naive", symbol="AAPL")) == 1  # the result recorded once
    finally:
        store.close()
    again = Store.open(ws, fsync=False)
    eng2 = Engine(ws, store=again, poll_interval=0.02, validate_symbols=False, gpu_source=FakeGpuSource(0))
    await eng2.start()
    await eng2.stop()
    assert len(again.runs(model="naive", symbol="AAPL")) == 1
    final = again.get_job(spec.id)
    assert final["state"] == "succeeded" and final["has_result"] is True and final["checkpointed"] is False
    again.close()
