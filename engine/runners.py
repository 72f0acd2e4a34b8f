"""Runners: how a coordinator (pipeline, sweep) submits a job, follows it and cancels it.

  - `ClientRunner`: the workspace's engine service through the job client (engine.client).
  - `SpoolRunner`: hands specs to the engine that runs this coordinator job through its inbox
    (`jobs/inbox/`) and reads states from the store read-only; what the `pipeline` and `sweep` job
    forms use, because it reaches any engine of the workspace — the service, an in-process one in
    tests, or the driver's engine from a Ray node that shares the workspace folder.

No task and no runner constructs an Engine: headless `forecast-console pipeline|sweep` submit their
job kind to the engine service and follow it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.events import read_events
from engine.jobs import JobDir, JobSpec, inbox_dir
from engine.state import FINAL_STATES as FINAL
from engine.state import Status


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
        chunk = read_events(JobDir.of(self.workspace, job_id).events, offset)
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


class ClientRunner(Runner):
    """Submits through the workspace's engine service (engine.client.JobClient), starting it on demand."""

    def __init__(self, workspace: Path) -> None:
        from engine.client import JobClient

        self.workspace = Path(workspace).resolve()
        self.client = JobClient(self.workspace)

    def submit(self, spec: JobSpec) -> str:
        return str(self.client.submit(spec)["id"])

    def state(self, job_id: str) -> str | None:
        rec = self.client.job(job_id)
        return None if rec is None else rec.get("state")

    def reason(self, job_id: str) -> str | None:
        rec = self.client.job(job_id)
        return None if rec is None else rec.get("reason")

    def cancel(self, job_id: str) -> None:
        self.client.cancel(job_id)

    def retry(self, job_id: str) -> str:
        return str(self.client.retry(job_id)["id"])

    def wait(self, job_id: str, *, poll: float = 0.2, timeout: float | None = None,
             on_poll: Callable[[], None] | None = None) -> str:
        if on_poll is not None:
            return super().wait(job_id, poll=poll, timeout=timeout, on_poll=on_poll)
        try:  # final AND stored: the next step reads the results from the store
            return str(self.client.wait(job_id, timeout=timeout)["state"])
        except TimeoutError:
            raise PipelineError(f"job {job_id} did not finish within {timeout} s") from None


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
            marker = inbox_dir(self.workspace) / job_id
            if since is not None and marker.exists() and time.time() - since > self.pickup_timeout:
                raise PipelineError(f"no engine picked up job {job_id} within {self.pickup_timeout:.0f} s: "
                                    "start the console or run the command headless")
            return Status.QUEUED
        return rec.get("state")

    def reason(self, job_id: str) -> str | None:
        rec = self._record(job_id)
        return rec.get("reason") if rec else None

    def exists(self, job_id: str) -> bool:
        # `state` says "queued" for an unknown id (it may still be in the inbox); this does not guess
        return (inbox_dir(self.workspace) / job_id).exists() or self._record(job_id) is not None

    def cancel(self, job_id: str) -> None:
        from engine.controller import spool_cancel

        spool_cancel(self.workspace, job_id)


# ----------------------------------------------------------------------------------------------
# pipeline state


