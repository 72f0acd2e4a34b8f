"""The engine service: one per workspace, the queue's owner and the only store writer.

`python -m engine.service WORKSPACE` (what `forecast-console engine start` and every client that
needs an engine run) takes the store's writer lock, starts an `Engine`, and answers clients on
the workspace's socket (engine.channel). It ends by itself once nothing is queued or running,
no spooled marker waits, and no client is connected, for `idle_s` seconds; `engine stop` ends it
at once. Either way running jobs are left running (they are detached) and the next engine
re-attaches them. A second service on the same workspace finds the lock taken and exits 3.

Why a service rather than whoever happens to be open: a queue drained only while some console or
CLI is running leaves jobs queued forever once the last one exits, and two processes cannot both
write the store. `<workspace>/engine.json` names the running service (pid, start time, backend)
for `engine status`; the socket, not that file, is the proof of life.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from engine import channel
from engine.controller import Engine
from engine.intake import list_inbox
from engine.jobs import JobSpec
from engine.state import JobUpdate, Status
from store.atomic import atomic_write_json

log = logging.getLogger("engine.service")

STATE_FILE = "engine.json"
LOG_FILE = "engine.log"
EXIT_LOCKED = 3
ENV_IDLE = "FORECAST_ENGINE_IDLE_S"
ENV_FAKE_GPUS = "FORECAST_ENGINE_FAKE_GPUS"  # tests only (with FORECAST_TEST_HOOKS=1): "N:GB"
DEFAULT_IDLE_S = 30.0
_DETAIL_KINDS = frozenset({"loss", "log"})


class Service:
    def __init__(self, workspace: Path, *, idle_s: float = DEFAULT_IDLE_S, cpu_slots: int = 2,
                 poll_interval: float = 0.2, gpu_source: Any = None) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.idle_s = idle_s
        self.cpu_slots = cpu_slots
        self.poll_interval = poll_interval
        self.gpu_source = gpu_source
        self.engine: Engine | None = None
        self.clients = 0  # open connections (subscribers and requests in flight)
        self._stop = asyncio.Event()
        self.started_at = time.time()

    # ---- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> int:
        from store import Store, StoreLocked

        self.workspace.mkdir(parents=True, exist_ok=True)

        def starting(text: str) -> None:  # a long first open (a ledger upgrade): the waiting client says it
            print(f"engine: {text}", flush=True)
            channel.note_starting(self.workspace, text)

        try:
            store = Store.open(self.workspace, progress=starting)
        except StoreLocked as exc:
            print(f"engine: not started: {exc}", file=sys.stderr, flush=True)
            return EXIT_LOCKED
        finally:
            channel.clear_starting(self.workspace)
        try:
            eng = Engine(self.workspace, store=store, cpu_slots=self.cpu_slots, poll_interval=self.poll_interval,
                         gpu_source=self.gpu_source)
            self.engine = eng
            await eng.start()
            server = await asyncio.start_unix_server(self._connection, path=channel.address(self.workspace),
                                                     limit=channel.MAX_LINE)
            atomic_write_json(self.workspace / STATE_FILE, self.info())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._stop.set)
            print(f"engine: serving {self.workspace} (pid {os.getpid()})", flush=True)
            await self._until_idle()
            server.close()
            await eng.stop()
        finally:
            with contextlib.suppress(OSError):
                (self.workspace / STATE_FILE).unlink()
            store.close()
        print("engine: stopped", flush=True)
        return 0

    def info(self) -> dict[str, Any]:
        eng = self.engine
        jobs = eng.jobs() if eng else []
        return {"pid": os.getpid(), "workspace": str(self.workspace), "started_at": self.started_at,
                "backend": eng.backend.name if eng else None, "cpu_slots": self.cpu_slots,
                "hyperparams_dir": str(eng.store.hyperparams_dir) if eng else None,
                "idle_s": self.idle_s, "clients": self.clients,
                "running": sum(1 for j in jobs if j.state == Status.RUNNING),
                "queued": sum(1 for j in jobs if j.state == Status.QUEUED), "jobs": len(jobs)}

    def busy(self) -> bool:
        eng = self.engine
        assert eng is not None
        return bool(self.clients or eng.running_count() or len(eng.scheduler) or list_inbox(self.workspace))

    async def _until_idle(self) -> None:
        idle_since = None if self.busy() else time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(0.25, max(0.02, self.idle_s / 4)))
            if self.busy():
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_s:
                return

    # ---- connections -------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients += 1
        try:
            if not _same_user(writer):
                return
            line = await reader.readline()
            if not line:
                return
            try:
                msg = channel.decode(line)
                if msg.get("op") == "subscribe":
                    await self._subscribe(reader, writer, set(msg.get("detail") or []))
                    return
                reply = {"ok": True, "result": await self._handle(msg)}
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the client
                if type(exc).__name__ not in channel.USER_ERRORS:
                    log.exception("request failed")
                reply = channel.error_reply(exc)
            writer.write(channel.encode(reply))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.clients -= 1
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()

    async def _handle(self, msg: dict[str, Any]) -> Any:
        eng = self.engine
        assert eng is not None
        op = msg.get("op")
        rec = self._record
        if op == "ping":
            return self.info()
        if op == "submit":
            spec = JobSpec.from_dict(msg.get("spec") or {})
            st = eng.submit(spec)
            if msg.get("settle"):
                await self._settle(st)
            return rec(spec.id)
        if op == "cancel":
            eng.cancel(str(msg.get("job_id")))
            return rec(str(msg.get("job_id")))
        if op == "retry":
            st = eng.retry(str(msg.get("job_id")))
            if msg.get("settle"):
                await self._settle(st)
            return rec(st.id)
        if op == "set_priority":
            eng.set_priority(str(msg.get("job_id")), msg.get("priority"))  # type: ignore[arg-type]
            return rec(str(msg.get("job_id")))
        if op == "jobs":
            return [rec(s.id) for s in eng.jobs()]
        if op == "job":
            return rec(str(msg.get("job_id"))) if eng.job(str(msg.get("job_id"))) else None
        if op == "detail":
            jid = str(msg.get("job_id"))
            return {"curve": eng.curve(jid), "logs": eng.log_tail(jid, int(msg.get("n") or 200))}
        if op == "wait":
            return await self._wait(str(msg.get("job_id")), msg.get("timeout"))
        if op == "store":
            return await self._store_write(msg)
        if op == "gc":
            return await self._gc(msg)
        if op == "stop":
            self._stop.set()
            return {"stopping": True}
        raise ValueError(f"unknown engine request {op!r}")

    async def _settle(self, st: Any) -> None:
        """Until admission has had a full tick at a new job (it was launched, or is still queued)."""
        eng = self.engine
        assert eng is not None
        ticks, deadline = eng.ticks, time.monotonic() + 5.0
        live = eng.table.jobs[st.id]
        while ((st.state == Status.QUEUED and eng.ticks < ticks + 2) or live.launching) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _record(self, job_id: str) -> dict[str, Any]:
        eng = self.engine
        assert eng is not None
        j = eng.table.require(job_id)
        return eng.persistence.record(j)

    async def _wait(self, job_id: str, timeout: Any) -> dict[str, Any]:
        """Until the job is final and its record (and results) have been written to the store."""
        eng = self.engine
        assert eng is not None
        eng.table.require(job_id)
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        while True:
            st = eng.job(job_id)
            if st is not None and st.finished and job_id not in eng.table.dirty and not eng.persistence.writing:
                return self._record(job_id)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {st.state if st else 'unknown'}")
            await asyncio.sleep(0.02)

    def _same_hyperparams(self, msg: dict[str, Any]) -> None:
        """Refuse a request made for another promoted-config folder than this engine's."""
        eng = self.engine
        assert eng is not None
        want = msg.get("hyperparams_dir")
        have = eng.store.hyperparams_dir
        if want and Path(want).expanduser().resolve() != Path(have):
            raise ValueError(f"the engine of this workspace writes promoted configs to {have}, not {want}; "
                             "use the same --hyperparams, or `forecast-console engine stop` first")

    async def _in_writer(self, fn: Any) -> Any:
        """`fn(store)` in the engine's writer thread, in order with its own writes; its result."""
        eng = self.engine
        assert eng is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def op() -> None:
            try:
                out = fn(eng.store)
            except Exception as exc:  # noqa: BLE001 - handed to the client
                loop.call_soon_threadsafe(fut.set_exception, exc)
            else:
                loop.call_soon_threadsafe(fut.set_result, out)

        eng.persistence.queue(op)
        eng.poller.poke()
        return await fut

    async def _store_write(self, msg: dict[str, Any]) -> Any:
        method = str(msg.get("method"))
        if method not in channel.STORE_WRITES:
            raise ValueError(f"the engine does not write {method!r} for clients")
        self._same_hyperparams(msg)
        args, kwargs = list(msg.get("args") or []), dict(msg.get("kwargs") or {})
        return await self._in_writer(lambda store: getattr(store, method)(*args, **kwargs))

    async def _gc(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Retention (engine.gc) done by the writer; the removed finished jobs leave the engine's table too."""
        from engine import gc

        eng = self.engine
        assert eng is not None
        self._same_hyperparams(msg)
        older, keep_failed = float(msg.get("older_than_s", -1)), bool(msg.get("keep_failed"))
        if older < 0:
            raise ValueError("gc needs older_than_s >= 0")
        plan = await self._in_writer(lambda store: gc.collect(store, older, keep_failed))
        for jid in plan["jobs"]:
            j = eng.table.jobs.get(jid)
            if j is not None and j.state.finished:
                del eng.table.jobs[jid]
                eng.table.publish(JobUpdate(jid, "removed", {}))  # consoles drop the row
        return plan

    async def _subscribe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         detail: set[str]) -> None:
        eng = self.engine
        assert eng is not None
        q = eng.subscribe()
        try:
            jobs = [self._record(s.id) for s in eng.jobs()]
            details = {s.id: {"curve": eng.curve(s.id), "logs": eng.log_tail(s.id)}
                       for s in eng.jobs() if not s.finished or s.id in detail}
            writer.write(channel.encode({"ok": True, "result": {"jobs": jobs, "details": details}}))
            await writer.drain()
            closed = asyncio.ensure_future(reader.read())  # EOF (or anything) ends the subscription
            while not closed.done():
                get = asyncio.ensure_future(q.get())
                await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    break
                batch = [get.result()]
                while not q.empty():
                    batch.append(q.get_nowait())
                writer.write(b"".join(channel.encode(self._update(u)) for u in batch))
                await writer.drain()
            closed.cancel()
        finally:
            eng.unsubscribe(q)

    def _update(self, u: JobUpdate) -> dict[str, Any]:
        job = None
        if u.kind not in _DETAIL_KINDS and self.engine is not None and u.job_id in self.engine.table.jobs:
            job = self._record(u.job_id)
        return {"update": {"job_id": u.job_id, "kind": u.kind, "data": u.data}, "job": job}


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _gpu_source_from_env() -> Any:
    raw = os.environ.get(ENV_FAKE_GPUS)
    if not raw or os.environ.get("FORECAST_TEST_HOOKS") != "1":
        return None
    from engine.gpu import FakeGpuSource

    n, _, gb = raw.partition(":")
    return FakeGpuSource(int(n), float(gb or 80))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.service", description="The engine service of a workspace.")
    p.add_argument("workspace")
    p.add_argument("--idle", type=float, default=float(os.environ.get(ENV_IDLE, DEFAULT_IDLE_S)),
                   help="seconds with nothing to do before the service exits")
    p.add_argument("--cpu-slots", type=int, default=2)
    p.add_argument("--poll", type=float, default=0.2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    svc = Service(Path(a.workspace), idle_s=a.idle, cpu_slots=a.cpu_slots, poll_interval=a.poll,
                  gpu_source=_gpu_source_from_env())
    return asyncio.run(svc.run())


if __name__ == "__main__":
    sys.exit(main())
