"""The engine's only door to the store: job records and result payloads, written in order.

Why one module: the engine is the only store writer, and every write it makes goes through
here — the job records (one `put_job` per changed job per tick, progress-only changes at most every
`persist_interval`) and the `result` payloads of finished tasks (runs, baselines, picks,
comparisons, regressions, in arrival order), all in one thread call per tick, results first so a
record never names a run that is not stored yet. A store failure is logged and kept in `errors`;
it never stops the engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from engine.jobtable import JobTable, LiveJob

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
        table.on_result = self.queue_result

    def call(self, name: str, *args: Any) -> Any:
        """`store.<name>(*args)`; None (and the error kept) when the store fails."""
        try:
            return getattr(self.store, name)(*args)
        except Exception as exc:  # noqa: BLE001 - a store problem must not stop the engine
            msg = f"store.{name} failed: {type(exc).__name__}: {exc}"
            log.error(msg)
            self.errors.append(msg)
            return None

    def load_jobs(self) -> list[dict[str, Any]]:
        """Every job record the store has (recovery reads them once, at start)."""
        return self.call("jobs") or []

    def record(self, j: LiveJob) -> dict[str, Any]:
        """The store's job record: JobState.to_record() plus what recovery needs."""
        rec = j.state.to_record()
        rec["spec"] = j.spec.to_dict()
        rec["events_offset"] = j.offset
        rec["job_dir"] = str(self.table.dir(j.state.id).path)
        rec["backend"] = self.backend_name
        if j.run_ids:
            rec["run_ids"] = list(j.run_ids)
        if j.result_extra:
            rec["result"] = dict(j.result_extra)
        return rec

    def queue_result(self, j: LiveJob, payload: dict[str, Any]) -> None:
        """Turn a `result` payload into ordered store writes (done in the flush thread)."""
        jid = j.state.id
        runs = payload.get("runs") or []
        baselines = payload.get("baselines") or []
        picks = payload.get("picks") or []
        comparisons = payload.get("comparisons") or []
        regressions = [r for r in payload.get("regressions") or [] if isinstance(r, dict)]
        for key in ("regressions", "summary"):
            if key in payload:
                j.result_extra[key] = payload[key]

        def write() -> None:
            s = self.store
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
        if not ops and not recs:
            return
        self.writing = True
        try:
            await asyncio.to_thread(self._write, ops, recs)
        finally:
            self.writing = False

    def _write(self, ops: list[Callable[[], None]], recs: list[tuple[LiveJob, dict[str, Any]]]) -> None:
        for op in ops:
            try:
                op()
            except Exception as exc:  # noqa: BLE001
                msg = f"store write of a job result failed: {type(exc).__name__}: {exc}"
                log.error(msg)
                self.errors.append(msg)
        for j, rec in recs:
            if j.run_ids:  # run ids appear only after the ops above ran
                rec["run_ids"] = list(j.run_ids)
            self.call("put_job", rec)

