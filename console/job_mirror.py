"""The console's live view of the engine service: its jobs, curves and logs, kept current.

Every console is a client of the workspace's engine service (engine.client), so any number of them
show the same jobs and can all act. The mirror subscribes once: the snapshot fills it, and each
update replaces the job's state in place (the `JobState` objects screens hold stay current),
appends loss points and log lines, and is passed on to the console's own subscribers as a
`JobUpdate` — the same interface an in-process `Engine` offers, so screens do not care.

Reading a finished job's curve the first time asks the engine (`detail`, a local request of a few
ms). Actions (submit, cancel, retry, priority) are requests answered by the engine, which
validates them; their errors are the engine's messages. When the engine goes away (killed, or
stopped) the mirror starts it again, re-reads the snapshot, and tells subscribers every job may
have changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from console.update_pump import log_text
from engine import channel
from engine.client import JobClient
from engine.jobs import JobSpec
from engine.state import FINAL_STATES, JobState, JobUpdate, Status

LOG_KEEP = 2000
#: How often opening tries to start-and-subscribe before giving up (see EngineMirror._connect).
SUBSCRIBE_TRIES = 3
_FIELDS = [f.name for f in dataclasses.fields(JobState)]


class EngineMirror:
    def __init__(self, workspace: Path, *, cpu_slots: int | None = None, poll_interval: float | None = None,
                 hyperparams_dir: Path | None = None, on_starting: Callable[[str], None] | None = None) -> None:
        #: `on_starting` hears what a starting service says it is doing (JobClient.start; called on the
        #: thread that waits for the service).
        self.client = JobClient(workspace, cpu_slots=cpu_slots, poll_interval=poll_interval,
                                hyperparams_dir=hyperparams_dir, on_starting=on_starting)
        self.workspace = self.client.workspace
        self._jobs: dict[str, JobState] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self._curves: dict[str, list[dict[str, Any]]] = {}
        self._logs: dict[str, deque[str]] = {}
        self._subs: list[asyncio.Queue[JobUpdate]] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.reconnects = 0

    # ---- connection --------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect (starting the service when none runs) and load the snapshot."""
        reader = await self._connect()
        self._task = asyncio.create_task(self._read(reader), name="engine-mirror")

    async def _connect(self) -> asyncio.StreamReader:
        """Start the service unless one answers, then subscribe.

        An idle service (no client, no job) ends by itself, and it can do so between answering
        `start`'s probe and this subscription (its idle time counts from before the probe). A
        subscription refused or closed at once therefore means "start it again", a few times, before
        it is an error."""
        for attempt in range(1, SUBSCRIBE_TRIES + 1):
            await asyncio.to_thread(self.client.start)
            try:
                reader, writer = await asyncio.open_unix_connection(self.client.address, limit=channel.MAX_LINE)
            except OSError:
                if attempt == SUBSCRIBE_TRIES:
                    raise
                continue
            writer.write(channel.encode({"op": "subscribe"}))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            try:
                first = await reader.readline()
            except ConnectionError:
                first = b""
            if first:
                break
            writer.close()
            if attempt == SUBSCRIBE_TRIES:
                raise ConnectionError("the engine closed the subscription")
        reply = channel.decode(first)
        if not reply.get("ok"):
            raise ConnectionError(reply.get("error", "subscription refused"))
        self._writer = writer
        self._load(reply["result"])
        self.connected.set()
        return reader

    def _load(self, snap: dict[str, Any]) -> None:
        for rec in snap.get("jobs", []):
            self._upsert(rec)
        for jid, d in (snap.get("details") or {}).items():
            self._curves[jid] = list(d.get("curve") or [])
            self._logs[jid] = deque(d.get("logs") or [], maxlen=LOG_KEEP)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while not self._closing:
            try:
                line = await reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError):
                line = b""
            if line:
                self._apply(channel.decode(line))
                continue
            if self._closing:
                return
            # The engine went away: start it again (it re-attaches or marks the jobs) and reload.
            self.connected.clear()
            while not self._closing:
                try:
                    reader = await self._connect()
                    break
                except (OSError, ConnectionError):
                    await asyncio.sleep(0.2)
            self.reconnects += 1
            for jid, st in self._jobs.items():
                self._publish(JobUpdate(jid, "state", {"state": st.state}))

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # ---- folding updates ---------------------------------------------------------------------
    def _upsert(self, rec: dict[str, Any]) -> JobState:
        new = JobState.from_record(rec)
        if isinstance(rec.get("spec"), dict):
            self._specs[new.id] = rec["spec"]
        cur = self._jobs.get(new.id)
        if cur is None:
            self._jobs[new.id] = new
            return new
        for name in _FIELDS:
            setattr(cur, name, getattr(new, name))
        return cur

    def _apply(self, msg: dict[str, Any]) -> None:
        u = msg.get("update") or {}
        jid, kind, data = u.get("job_id"), u.get("kind"), dict(u.get("data") or {})
        if not isinstance(jid, str):
            return
        if msg.get("job"):
            self._upsert(msg["job"])
        if kind == "removed":  # gc forgot the job: it leaves every console
            for known in (self._jobs, self._specs, self._curves, self._logs):
                known.pop(jid, None)
        elif kind == "loss":
            self._curves.setdefault(jid, []).append(data)
        elif kind == "log":
            self._logs.setdefault(jid, deque(maxlen=LOG_KEEP)).append(log_text(data))
        self._publish(JobUpdate(jid, str(kind), data))

    def _publish(self, upd: JobUpdate) -> None:
        for q in self._subs:
            q.put_nowait(upd)

    # ---- the Engine interface the console uses -----------------------------------------------------
    def subscribe(self) -> asyncio.Queue[JobUpdate]:
        q: asyncio.Queue[JobUpdate] = asyncio.Queue()
        self._subs.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[JobUpdate]) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(q)

    def jobs(self) -> list[JobState]:
        return sorted(self._jobs.values(), key=lambda s: (s.created_at, s.id))

    def job(self, job_id: str) -> JobState | None:
        return self._jobs.get(job_id)

    def spec(self, job_id: str) -> JobSpec | None:
        d = self._specs.get(job_id)
        return JobSpec.from_dict(d) if d else None

    def running_count(self) -> int:
        return sum(1 for s in self._jobs.values() if s.state == Status.RUNNING)

    def job_for_pid(self, pid: int) -> str | None:
        return next((s.id for s in self._jobs.values() if s.pid == pid and s.state == Status.RUNNING), None)

    def _detail(self, job_id: str) -> None:
        if job_id in self._curves or job_id not in self._jobs:
            return
        try:
            d = self.client.detail(job_id, LOG_KEEP)
        except (OSError, ValueError):
            return
        self._curves[job_id] = list(d.get("curve") or [])
        self._logs[job_id] = deque(d.get("logs") or [], maxlen=LOG_KEEP)

    def curve(self, job_id: str) -> list[dict[str, Any]]:
        self._detail(job_id)
        return list(self._curves.get(job_id, []))

    def log_tail(self, job_id: str, n: int = 200) -> list[str]:
        self._detail(job_id)
        return list(self._logs.get(job_id, []))[-n:]

    def _acted(self, rec: dict[str, Any]) -> JobState:
        st = self._upsert(rec)
        if st.id not in self._curves and st.state not in FINAL_STATES:
            self._curves[st.id] = []
            self._logs[st.id] = deque(maxlen=LOG_KEEP)
        return st

    def submit(self, spec: JobSpec) -> JobState:
        return self._acted(self.client.submit(spec))

    def cancel(self, job_id: str) -> None:
        self._acted(self.client.cancel(job_id))

    def retry(self, job_id: str) -> JobState:
        return self._acted(self.client.retry(job_id))

    def set_priority(self, job_id: str, priority: int) -> None:
        self._acted(self.client.set_priority(job_id, priority))

    def store_write(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Blocking: call from a thread (ConsoleServices.call)."""
        return self.client.store_write(method, *args, **kwargs)
