"""The engine's only door to the store: job records and result payloads, written in order.

Why one module: the engine is the only store writer, and every write it makes goes through
here — the job records (one `put_job` per changed job per tick, progress-only changes at most every
`persist_interval`), the `result` payloads of finished tasks (runs, baselines, picks,
comparisons, regressions, in arrival order) and the spool markers the tick took, all in one
thread call per tick, results first so a record never names a run that is not stored yet.

Exactly once: the tick's writes are one ledger transaction (`Store.transaction`), so a result's
runs, the marker that says the result was recorded (`record_result`, refused the second time) and
the job's event offset commit together; a spooled job's record and its intake commit together,
and the inbox marker is removed only after that commit. The decision-table writes of a result
(TinyDB) happen inside the same block before the commit and are upserts, so a crash before the
commit repeats them harmlessly. A store failure is logged and kept in `errors`; it never stops the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.jobtable import JobTable, LiveJob
from engine.state import ACTIVE_STATES, FINAL_STATES

#: Finished jobs the engine keeps in memory from the start (the console's queue shows these);
#: older ones stay in the store and are loaded when a command names one.
RECENT_FINISHED = 500

log = logging.getLogger("engine")


class Persistence:
    def __init__(self, store: Any, table: JobTable, *, backend_name: str, persist_interval: float) -> None:
        self.store = store
        self.table = table
        self.backend_name = backend_name
        self.persist_interval = persist_interval
        self.errors: list[str] = []
        self.writing = False  # a flush is in its writer thread (a record taken from `dirty` is not stored yet)
        self._ops: list[Callable[[], None]] = []  # ordered store writes (result payloads)
        self._intakes: list[tuple[Path, str, str]] = []  # (inbox marker, job id, outcome) to commit
        table.on_result = self.queue_result

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """`store.<name>(*args, **kwargs)`; None (and the error kept) when the store fails."""
        try:
            return getattr(self.store, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a store problem must not stop the engine
            msg = f"store.{name} failed: {type(exc).__name__}: {exc}"
            log.error(msg)
            self.errors.append(msg)
            return None

    def load_jobs(self) -> list[dict[str, Any]]:
        """The job records recovery starts from: every unfinished job and the newest
        RECENT_FINISHED finished ones (older ones are read from the store when asked for)."""
        live = self.call("jobs", [str(s) for s in ACTIVE_STATES]) or []
        done = self.call("jobs", [str(s) for s in FINAL_STATES], limit=RECENT_FINISHED) or []
        return [*done, *live]

    def load_job(self, job_id: str) -> dict[str, Any] | None:
        """One job record from the store (a finished job older than what the engine keeps)."""
        return self.call("get_job", job_id)

    def seen_intake(self, job_id: str) -> bool:
        """Whether a spooled job was taken before (its marker outlived the commit that took it)."""
        return self.call("intake_outcome", job_id) is not None or self.call("get_job", job_id) is not None

    def note_intake(self, marker: Path, job_id: str, outcome: str) -> None:
        """A marker taken this tick: recorded with the job in the next flush, removed after it."""
        self._intakes.append((marker, job_id, outcome))

    def record(self, j: LiveJob) -> dict[str, Any]:
        """The store's job record: JobState.to_record() plus what recovery needs."""
        rec = j.state.to_record()
        rec["spec"] = j.spec.to_dict()
        rec["events_offset"] = j.offset
        # what the events before that offset said, so a recovering engine reads on from the offset
        rec["checkpointed"], rec["has_result"] = j.checkpointed, j.has_result
        rec["job_dir"] = str(self.table.dir(j.state.id).path)
        rec["backend"] = self.backend_name
        if j.run_ids:
            rec["run_ids"] = list(j.run_ids)
        if j.result_extra:
            rec["result"] = dict(j.result_extra)
        return rec

    def queue_result(self, j: LiveJob, payload: dict[str, Any]) -> None:
        """Turn a `result` payload into ordered store writes (done in the flush thread), at most
        once per job however often its events are replayed."""
        jid = j.state.id
        offset = j.offset
        runs = payload.get("runs") or []
        baselines = payload.get("baselines") or []
        picks = payload.get("picks") or []
        comparisons = payload.get("comparisons") or []
        regressions = [r for r in payload.get("regressions") or [] if isinstance(r, dict)]
        for key in ("regressions", "summary", "usage"):
            if key in payload:
                j.result_extra[key] = payload[key]
        peaks = self.table.scheduler.peaks
        measured = peaks.record(payload.get("usage"))  # admission of the next job like it uses it

        def write() -> None:
            s = self.store
            if not s.record_result(jid, offset):
                log.info("job %s: result already recorded; not recording it again", jid)
                return
            for r in runs:
                rid = s.log_run(
                    r["model"], r["symbol"], r.get("hyperparams") or {}, r.get("metrics") or {},
                    checkpoint=r.get("checkpoint"), training_time=r.get("training_time"),
                    notes=r.get("notes", ""), seed=r.get("seed"), job_id=jid, extra=r.get("extra"),
                )
                j.run_ids.append(rid)
            if baselines:
                s.put_baselines(list(baselines), job_id=jid)
            for p in picks:
                s.set_pick(p["model"], p["symbol"], dict(p), job_id=jid)
            if comparisons:
                s.put_comparisons(list(comparisons), job_id=jid)
            if regressions:
                s.put_regressions(regressions, job_id=jid)
            if measured is not None:
                peaks.save()  # <workspace>/peaks.json (engine.peaks), in order with the results

        self._ops.append(write)

    def queue(self, op: Callable[[], None]) -> None:
        """Any other store write, done in order with the job results at the next flush."""
        self._ops.append(op)

    async def flush(self, force: bool = False) -> None:
        now = time.time()
        ops, self._ops = self._ops, []
        recs: list[tuple[LiveJob, dict[str, Any]]] = []
        keep: dict[str, bool] = {}
        for jid, urgent in self.table.dirty.items():
            j = self.table.jobs.get(jid)
            if j is None:
                continue
            if urgent or force or now - j.last_persist >= self.persist_interval:
                j.last_persist = now
                recs.append((j, self.record(j)))
            else:
                keep[jid] = False
        self.table.dirty = keep
        intakes, self._intakes = self._intakes, []
        if not ops and not recs and not intakes:
            return
        self.writing = True
        try:
            await asyncio.to_thread(self._write, ops, recs, intakes)
        finally:
            self.writing = False

    def commit_records(self, recs: list[tuple[LiveJob, dict[str, Any]]]) -> bool:
        """Write these records (built by `record` on the loop) at once, in the calling thread: before a
        launch (a job recorded as running is never launched again by a later engine). False when the
        store refused."""
        return self._commit([], recs, [])

    def _write(self, ops: list[Callable[[], None]], recs: list[tuple[LiveJob, dict[str, Any]]],
               intakes: list[tuple[Path, str, str]]) -> None:
        if not self._commit(ops, recs, intakes):
            for j, _ in recs:  # try again next tick
                self.table.mark(j.state.id, urgent=True)
            self._intakes[:0] = intakes
            return
        for marker, _, _ in intakes:
            with contextlib.suppress(OSError):
                marker.unlink()

    def _commit(self, ops: list[Callable[[], None]], recs: list[tuple[LiveJob, dict[str, Any]]],
                intakes: list[tuple[Path, str, str]]) -> bool:
        try:
            with self.store.transaction():
                for op in ops:
                    try:
                        op()
                    except Exception as exc:  # noqa: BLE001 - one bad payload must not lose the tick
                        msg = f"store write of a job result failed: {type(exc).__name__}: {exc}"
                        log.error(msg)
                        self.errors.append(msg)
                for j, rec in recs:
                    if j.run_ids:  # run ids appear only after the ops above ran
                        rec["run_ids"] = list(j.run_ids)
                self.store.put_jobs([rec for _, rec in recs])
                for _, jid, outcome in intakes:
                    self.store.record_intake(jid, outcome)
        except Exception as exc:  # noqa: BLE001 - a store problem must not stop the engine
            msg = f"store write failed (nothing of this tick was recorded): {type(exc).__name__}: {exc}"
            log.error(msg)
            self.errors.append(msg)
            return False
        return True
