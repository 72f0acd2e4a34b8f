"""Runners: how a coordinator (pipeline, sweep) submits a job, follows it and cancels it.

  - `EngineRunner`: an in-process `engine.controller.Engine` on its own event-loop thread (the
    headless `forecast-console pipeline|sweep` commands own the workspace).
  - `SpoolRunner`: hands specs to an already-running engine through its inbox (a pipeline or sweep
    running as a job inside a worker, which must not open the store for writing).

Why outside engine.tasks: tasks never construct an Engine (an import-linter contract); the
headless commands choose the runner (console.commands.follow.open_runner).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.events import read_events
from engine.jobs import JobSpec

FINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})


class PipelineError(RuntimeError):
    """A step failed after its retries, or no engine took the submitted jobs."""


class Runner:
    """Submit a spec, read a job's state and events, cancel it."""

    workspace: Path

    def submit(self, spec: JobSpec) -> str:
        raise NotImplementedError

    def state(self, job_id: str) -> str | None:
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def reason(self, job_id: str) -> str | None:
        return None

    def exists(self, job_id: str) -> bool:
        """Whether the engine has (or is about to take) this job; False for a lost one (sweep re-attach)."""
        return self.state(job_id) is not None

    def events(self, job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        chunk = read_events(self.workspace / "jobs" / job_id / "events.jsonl", offset)
        return chunk.events, chunk.offset

    def result(self, job_id: str) -> dict[str, Any] | None:
        events, _ = self.events(job_id)
        for e in reversed(events):
            if e.get("type") == "result":
                return {k: v for k, v in e.items() if k not in ("job", "t", "type")}
        return None

    def wait(self, job_id: str, *, poll: float = 0.2, timeout: float | None = None,
             on_poll: Callable[[], None] | None = None) -> str:
        t0 = time.time()
        while True:
            st = self.state(job_id)
            if st in FINAL:
                return st
            if on_poll is not None:
                on_poll()
            if timeout is not None and time.time() - t0 > timeout:
                raise PipelineError(f"job {job_id} did not finish within {timeout:.0f} s (state {st})")
            time.sleep(poll)

    def close(self) -> None:
        pass


class EngineRunner(Runner):
    """An in-process Engine running on a private event loop thread; the caller stays synchronous."""

    def __init__(self, workspace: Path, *, cpu_slots: int = 1, poll_interval: float = 0.1, store: Any = None,
                 env: dict[str, str] | None = None) -> None:
        from engine.controller import Engine

        self.workspace = Path(workspace).resolve()
        if store is None:
            from store.store import Store

            store = Store.open(self.workspace)
        self.store = store
        self.engine = Engine(self.workspace, store=store, cpu_slots=cpu_slots, poll_interval=poll_interval, env=env)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pipeline-engine", daemon=True)
        self._thread.start()
        self._call(self.engine.start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def _sync(self, fn: Callable[[], Any]) -> Any:
        async def wrap() -> Any:
            return fn()

        return self._call(wrap())

    def submit(self, spec: JobSpec) -> str:
        st = self._sync(lambda: self.engine.submit(spec))
        return st.id

    def state(self, job_id: str) -> str | None:
        st = self._sync(lambda: self.engine.job(job_id))
        if st is None:
            rec = self.store.get_job(job_id)
            return rec.get("state") if rec else None
        if st.state in FINAL:
            # final in memory; report it only once the store has it (results are written first)
            rec = self._sync(lambda: self.store.get_job(job_id))
            return st.state if rec and rec.get("state") in FINAL else "running"
        return st.state

    def reason(self, job_id: str) -> str | None:
        st = self._sync(lambda: self.engine.job(job_id))
        return st.reason if st else None

    def cancel(self, job_id: str) -> None:
        self._sync(lambda: self.engine.cancel(job_id))

    def retry(self, job_id: str) -> str:
        return self._sync(lambda: self.engine.retry(job_id)).id

    def close(self) -> None:
        try:
            self._call(self.engine.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self.store.close()


class SpoolRunner(Runner):
    """Submits to the engine of a running console through `jobs/inbox/`; reads the store read-only."""

    def __init__(self, workspace: Path, *, pickup_timeout: float = 60.0) -> None:
        self.workspace = Path(workspace).resolve()
        self.pickup_timeout = pickup_timeout
        self._submitted: dict[str, float] = {}

    def submit(self, spec: JobSpec) -> str:
        from engine.controller import spool_submit

        spool_submit(self.workspace, spec)
        self._submitted[spec.id] = time.time()
        return spec.id

    def _record(self, job_id: str) -> dict[str, Any] | None:
        from engine.evaluation import open_store_readonly

        s = open_store_readonly(self.workspace)
        if s is None:
            return None
        try:
            return s.get_job(job_id)
        finally:
            s.close()

    def state(self, job_id: str) -> str | None:
        rec = self._record(job_id)
        if rec is None:
            since = self._submitted.get(job_id)
            marker = self.workspace / "jobs" / "inbox" / job_id
            if since is not None and marker.exists() and time.time() - since > self.pickup_timeout:
                raise PipelineError(f"no engine picked up job {job_id} within {self.pickup_timeout:.0f} s: "
                                    "start the console or run the command headless")
            return "queued"
        return rec.get("state")

    def reason(self, job_id: str) -> str | None:
        rec = self._record(job_id)
        return rec.get("reason") if rec else None

    def exists(self, job_id: str) -> bool:
        # `state` says "queued" for an unknown id (it may still be in the inbox); this does not guess
        return (self.workspace / "jobs" / "inbox" / job_id).exists() or self._record(job_id) is not None

    def cancel(self, job_id: str) -> None:
        from engine.controller import spool_cancel

        spool_cancel(self.workspace, job_id)


# ----------------------------------------------------------------------------------------------
# pipeline state


