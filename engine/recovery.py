"""Rebuilding the engine's jobs from the store when an engine starts.

Jobs the store has as `running` are re-attached when their process is still alive (the backend
decides: pid and start time match, or the Ray actor exists). Their state is the stored record,
which the previous engine wrote together with the event offset it had read to, and what the record
says about the events before that offset (`checkpointed`, `has_result`); so recovery reads the
event file only from that offset on (engine.eventlog: an offset stays valid across rotations), and
those events have their effects (a result is also recorded at most once: `Store.record_result`).
The curve and log tail from before the offset are read when someone first asks (`ensure_loaded`).
A record written before it carried `checkpointed` is the one case read from the start, once, for
those two facts. A dead job becomes `succeeded`/`failed` if it left `exit.json`; otherwise the one
dead-job rule of engine.deaths applies: `interrupted` if it reported a checkpoint (retry resumes it
with params {"resume": true}), else `failed`, with the reason. A job recorded as running whose
worker provably never started (the engine died between recording and launching: engine.launches)
is queued again, keeping its priority and place; that launch can never start later.
Queued jobs are re-queued. Finished jobs are loaded without their curve, which is read from the
event file the first time someone asks.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.backends.base import Backend, ExitStatus, Handle
from engine.events import read_events
from engine.jobs import JobSpec
from engine.jobtable import JobTable, LiveJob, event_log_line
from engine.launches import MAX_LAUNCHES, give_up_reason, requeue_reason
from engine.scheduler import COORDINATOR_KINDS, Placement
from engine.state import FINAL_STATES, JobState, Status, apply_event
from store.atomic import read_json

log = logging.getLogger("engine")


def _load_spec(table: JobTable, rec: dict[str, Any]) -> JobSpec | None:
    try:
        if isinstance(rec.get("spec"), dict):
            return JobSpec.from_dict(rec["spec"])
        return table.dir(rec["id"]).read_spec()
    except (OSError, ValueError, KeyError) as exc:
        log.error("cannot recover job %s: %s", rec.get("id"), exc)
        return None


def recover(table: JobTable, backend: Backend, records: Iterable[dict[str, Any]]) -> None:
    """Runs in a thread before the poller starts (nothing else touches engine state yet)."""
    for rec in sorted(records, key=lambda r: (r.get("created_at") or 0, r.get("id", ""))):
        jid = rec.get("id")
        if not isinstance(jid, str) or jid in table.jobs:
            continue
        state = rec.get("state")
        spec = _load_spec(table, rec)
        if spec is None:
            continue
        st = JobState.from_record(rec)
        jd = table.dir(jid)
        if state == Status.QUEUED:
            table.scheduler.push(spec)
            table.jobs[jid] = LiveJob(spec=spec, state=st, handle=Handle(jid, jd.path))
            continue
        if state != Status.RUNNING:
            table.jobs[jid] = LiveJob(spec=spec, state=st, handle=Handle(jid, jd.path), loaded=False)
            continue
        offset = int(rec.get("events_offset") or 0)
        j = LiveJob(spec=spec, state=st, offset=offset, persisted_offset=offset, loaded=False, history_end=offset)
        j.run_ids = list(rec.get("run_ids") or [])
        j.checkpointed, j.has_result = bool(rec.get("checkpointed")), bool(rec.get("has_result"))
        if "checkpointed" not in rec:
            _facts_before(j, jd.events, offset)
        table.jobs[jid] = j
        st.warning = None
        table.ingest(j, read_events(jd.events, offset), side_effects=True)
        handle = backend.attach(jid, jd.path)
        if handle is not None:
            j.handle = handle
            st.pid = handle.pid or st.pid
            gpu = None
            if st.device and st.device.startswith("cuda:"):
                gpu = int(st.device.split(":", 1)[1])
            table.scheduler.mark_running(jid, Placement(gpu=gpu, vram_gb=st.vram_gb, admitted_at=time.time(),
                                                        slot=spec.kind not in COORDINATOR_KINDS))
            table.log(j, "info", f"re-attached to pid {handle.pid}")
            table.mark(jid, urgent=True)
            continue
        j.handle = Handle(jid, jd.path)
        data = read_json(jd.exit)
        if data is not None and isinstance(data.get("code"), int):
            table.on_exit(j, ExitStatus(code=data["code"], reason=f"exit code {data['code']}"))
        elif rec.get("backend") == backend.name and requeue_unstarted(table, backend, j):
            continue
        else:
            # Same rule as a death the engine watched (engine.deaths): resumable -> interrupted, else failed.
            table.on_exit(j, ExitStatus(code=None, reason="the process died while no engine was watching "
                                                          "(no exit status)"))


def requeue_unstarted(table: JobTable, backend: Backend, j: LiveJob) -> bool:
    """A job recorded as running whose worker is gone without an exit status: when its launch provably
    never started (the backend revoked the launch before any worker claimed it, so no worker wrote
    anything: engine.launches), it goes back to the queue with its priority and place (or, after
    MAX_LAUNCHES such launches, fails saying so) and this returns True; else False (the dead-job rule)."""
    st = j.state
    if st.launches < 1 or j.has_result or j.checkpointed or j.cancel_requested:
        return False
    if not backend.revoke_launch(st.id, table.dir(st.id).path, st.launches):
        return False
    table.scheduler.release(st.id)
    if st.launches >= MAX_LAUNCHES:
        table.finish(j, Status.FAILED, give_up_reason(st.launches))
    else:
        table.requeue(j, requeue_reason(st.launches))
    return True


def load_finished(table: JobTable, backend: Backend, record: dict[str, Any] | None) -> LiveJob | None:
    """A finished job from its store record (one the engine did not load at start), or None when the
    record is missing or the job is not finished."""
    if record is None or record.get("state") not in FINAL_STATES:
        return None
    recover(table, backend, [record])
    return table.jobs.get(str(record.get("id")))


def _facts_before(j: LiveJob, path: Path, offset: int) -> None:
    """What a record older than `checkpointed`/`has_result` does not say, from the events before `offset`."""
    for ev in read_events(path, 0, offset).events:
        if ev.get("type") == "artifact" and ev.get("kind") == "checkpoint":
            j.checkpointed = True
        elif ev.get("type") == "result":
            j.has_result = True


def ensure_loaded(table: JobTable, j: LiveJob) -> None:
    """Jobs from the store get their curve and logs from before `history_end` (the whole file for a
    finished job) on demand, ahead of whatever this engine has added since."""
    if j.loaded:
        return
    j.loaded = True
    chunk = read_events(table.dir(j.state.id).events, 0, j.history_end)
    snapshot = replace(j.state)
    snapshot.metrics = dict(j.state.metrics)
    curve: list[dict[str, Any]] = []
    logs: list[str] = []
    for ev in chunk.events:
        ups = apply_event(snapshot, ev)
        if ev.get("type") == "loss":
            curve.append(ups[0].data)
        elif ev.get("type") in ("log", "error", "artifact"):
            logs.append(event_log_line(ev, ups[0]))
    j.curve[:0] = curve
    j.logs = deque([*logs, *j.logs], maxlen=j.logs.maxlen)  # the newest lines when there are too many
