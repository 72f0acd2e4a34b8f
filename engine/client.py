"""The one job client: every console, headless command and coordinator reaches the engine here.

`JobClient(workspace)` talks to the workspace's engine service over engine.channel and starts the
service when none answers (`ensure=True`, the default for anything that queues work or writes the
store). A service that died (killed, crashed) is simply started again by the next request; it
re-attaches the jobs that still run and marks the others interrupted. While a service starts, what it
says it is doing (a one-off ledger upgrade, with how far it is: engine.channel.starting_note) goes to
`on_starting` (default: stderr), and the wait for it lasts as long as it keeps moving.

Calls: `submit(spec)`, `cancel(id)`, `retry(id)`, `set_priority(id, p)`, `jobs()`, `job(id)`,
`detail(id)`, `wait(id)` (final and stored), `store_write(method, *args, **kwargs)` (promote,
rollback, put_baselines, ...: the engine is the only store writer), `gc(older_than_s)` (retention), `subscribe()` (a blocking
iterator of updates, reconnecting through engine restarts), `status()`, `stop()`.
Records are dicts (`JobState` fields + `spec`); `engine.state.JobState.from_record` reads them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine import channel
from engine.jobs import JobSpec, JobSpecError

#: The module a workspace's engine service runs as (`python -m`); also how its process is recognised.
SERVICE_MODULE = "engine.service"

#: Services this process started (tests end the ones still running; nothing else uses it).
SPAWNED: list[subprocess.Popen[bytes]] = []


class EngineError(ConnectionError):
    """The engine service could not be reached or started (the message says why and where to look)."""


class EngineRequestError(ValueError):
    """The engine refused a request; the message is for the user."""


def _raise(reply: dict[str, Any]) -> None:
    typ, msg = reply.get("type", "Error"), reply.get("error", "engine request failed")
    if typ in ("JobSpecError", "TaskParamError"):
        raise JobSpecError(msg)
    if typ == "TimeoutError":
        raise TimeoutError(msg)
    if typ in channel.USER_ERRORS:
        raise EngineRequestError(msg)
    raise EngineError(f"engine error ({typ}): {msg}")


def _say_on_stderr(text: str) -> None:
    print(f"engine: {text}", file=sys.stderr, flush=True)


class JobClient:
    def __init__(self, workspace: Path | str, *, ensure: bool = True, start_timeout: float = 60.0,
                 cpu_slots: int | None = None, poll_interval: float | None = None,
                 hyperparams_dir: Path | str | None = None,
                 on_starting: Callable[[str], None] | None = None) -> None:
        from engine import paths

        self.workspace = Path(workspace).expanduser().resolve()
        self.hyperparams_dir = paths.hyperparams_dir(hyperparams_dir)
        self.address = channel.address(self.workspace)
        self.ensure = ensure
        self.start_timeout = start_timeout
        self.cpu_slots = cpu_slots
        self.poll_interval = poll_interval
        #: Hears what a service this client waits for says it is doing (default: a line on stderr).
        self.on_starting = on_starting or _say_on_stderr

    # ---- connection ------------------------------------------------------------------------
    def _connect(self, timeout: float | None = 10.0) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(self.address)
        except OSError:
            s.close()
            raise
        return s

    def running(self) -> bool:
        try:
            self._connect(2.0).close()
            return True
        except OSError:
            return False

    def start(self) -> bool:
        """Start the service unless one answers; True when this call started it."""
        if self.running():
            return False
        self.workspace.mkdir(parents=True, exist_ok=True)
        from engine import paths
        from engine.service import ENV_IDLE, EXIT_LOCKED, LOG_FILE

        env = dict(os.environ)
        # The service outlives this process: give it absolute folders, not ones relative to our cwd.
        env[paths.ENV_HYPERPARAMS] = str(self.hyperparams_dir)
        if os.environ.get(paths.ENV_DATA):
            env[paths.ENV_DATA] = os.path.abspath(os.environ[paths.ENV_DATA])
        cmd = [sys.executable, "-m", SERVICE_MODULE, str(self.workspace)]
        if self.cpu_slots is not None:
            cmd += ["--cpu-slots", str(self.cpu_slots)]
        if self.poll_interval is not None:
            cmd += ["--poll", f"{self.poll_interval:g}"]
        if ENV_IDLE in os.environ:
            cmd += ["--idle", os.environ[ENV_IDLE]]
        log = self.workspace / LOG_FILE

        def spawn() -> subprocess.Popen[bytes]:
            with open(log, "ab") as out:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True, close_fds=True)
            SPAWNED.append(proc)
            return proc

        def exited(proc: subprocess.Popen[bytes]) -> EngineError:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            return EngineError(f"the engine service for {self.workspace} exited ({proc.returncode}): "
                               + " | ".join(tail))

        proc = spawn()
        deadline = time.monotonic() + self.start_timeout
        lost_race = False
        said = None
        while time.monotonic() < deadline:
            if self.running():
                return not lost_race
            heard = self._heard(said)
            if heard != said:  # busy (a ledger upgrade) and moving: wait for as long as it keeps moving
                said, deadline = heard, time.monotonic() + self.start_timeout
            if proc.poll() is not None:
                if proc.returncode != EXIT_LOCKED:
                    raise exited(proc)
                holder = self._lock_holder()
                if holder == "other":
                    raise exited(proc)
                if holder == "service":
                    # Another client's service holds the writer lock: it is still starting (recovery can take
                    # seconds before its socket is bound), or it is ending (idle). Wait for it to answer, or end.
                    lost_race = True
                else:
                    # Nobody alive holds it by its file: the service we waited for ended without answering, or a
                    # new holder has the lock but has not written its name yet. Start ours again.
                    proc, lost_race = spawn(), False
            time.sleep(0.05)
        held = " (the service holding the store's writer lock never bound its socket)" if lost_race else ""
        raise EngineError(f"the engine service for {self.workspace} did not answer within "
                          f"{self.start_timeout:.0f} s{held} (see {log})")

    def _heard(self, said: str | None) -> str | None:
        """What a starting service says it is doing (engine.channel.starting_note), passed to `on_starting`
        when it is new; returns the last thing said."""
        note = channel.starting_note(self.workspace)
        if note is None or note == said:
            return said
        self.on_starting(note)
        return note

    def _lock_holder(self) -> str:
        """Who holds the store's writer lock, by what its file names: "service" (an engine service of this
        workspace, perhaps still starting or already ending), "other" (another live writer, which no amount
        of waiting would turn into a service), or "none" (no live process is named: the lock is free, or
        its new holder has taken it and not yet written its name)."""
        import psutil

        from store.storage import WorkspaceLock
        from store.workspace import Workspace

        holder = WorkspaceLock(Workspace(self.workspace).lock_file).holder() or {}
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return "none"
        if holder.get("host") != socket.gethostname():
            return "other"
        try:
            cmd = psutil.Process(pid).cmdline()
        except psutil.NoSuchProcess:
            return "none"
        except (psutil.Error, OSError):
            return "other"
        return "service" if SERVICE_MODULE in cmd and str(self.workspace) in cmd else "other"

    def _open(self) -> socket.socket:
        """A connection to the service, starting it first when none answers (and `ensure`)."""
        try:
            return self._connect()
        except OSError:
            if not self.ensure:
                raise EngineError(f"no engine is running for {self.workspace}") from None
            self.start()
            return self._connect()

    def request(self, op: str, *, io_timeout: float | None = 30.0, **args: Any) -> Any:
        """One request, one reply."""
        s = self._open()
        with s:
            s.settimeout(io_timeout)
            s.sendall(channel.encode({"op": op, **args}))
            data = _read_line(s)
        if not data:
            raise EngineError(f"the engine for {self.workspace} closed the connection during {op!r}")
        reply = channel.decode(data)
        if not reply.get("ok"):
            _raise(reply)
        return reply.get("result")

    # ---- jobs ------------------------------------------------------------------------------
    def submit(self, spec: JobSpec, *, settle: bool = False) -> dict[str, Any]:
        """Queue `spec`; its record. `settle`: reply once the engine has tried to start it (the record
        then says running on which device, or still queued behind others)."""
        return self.request("submit", spec=spec.to_dict(), settle=settle)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("cancel", job_id=job_id)

    def retry(self, job_id: str, *, settle: bool = False) -> dict[str, Any]:
        return self.request("retry", job_id=job_id, settle=settle)

    def set_priority(self, job_id: str, priority: int) -> dict[str, Any]:
        return self.request("set_priority", job_id=job_id, priority=priority)

    def jobs(self) -> list[dict[str, Any]]:
        return self.request("jobs")

    def job(self, job_id: str) -> dict[str, Any] | None:
        return self.request("job", job_id=job_id)

    def detail(self, job_id: str, n: int = 200) -> dict[str, Any]:
        """{"curve": [loss points], "logs": [last n log lines]}."""
        return self.request("detail", job_id=job_id, n=n)

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job's record once it is final and stored (results included); restarts a dead engine."""
        while True:
            try:
                return self.request("wait", job_id=job_id, timeout=timeout,
                                    io_timeout=None if timeout is None else timeout + 10)
            except (EngineError, ConnectionError):
                if not self.ensure:
                    raise
                time.sleep(0.1)  # the engine died mid-wait: the next request starts a new one

    def store_write(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Ask the engine to call `store.<method>(*args, **kwargs)` (see engine.channel.STORE_WRITES)."""
        return self.request("store", method=method, args=list(args), kwargs=kwargs,
                            hyperparams_dir=str(self.hyperparams_dir), io_timeout=300.0)

    def gc(self, older_than_s: float, *, keep_failed: bool = False) -> dict[str, Any]:
        """Remove finished jobs and unprotected run artifacts older than the cut-off (engine.gc), done by
        the engine (the only writer); the applied plan (`engine.gc.Plan.to_dict`)."""
        return self.request("gc", older_than_s=older_than_s, keep_failed=keep_failed,
                            hyperparams_dir=str(self.hyperparams_dir), io_timeout=600.0)

    # ---- service ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any] | None:
        """The service's info, or None when none runs (never starts one)."""
        try:
            s = self._connect(5.0)
        except OSError:
            return None
        with s:
            s.sendall(channel.encode({"op": "ping"}))
            data = _read_line(s)
        return channel.decode(data).get("result") if data else None

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the service to end (jobs keep running); True once it no longer answers."""
        if self.status() is None:
            return False
        try:
            s = self._connect(5.0)
            with s:
                s.sendall(channel.encode({"op": "stop"}))
                _read_line(s)
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise EngineError(f"the engine for {self.workspace} did not stop within {timeout:.0f} s")
            time.sleep(0.05)
        return True

    def subscribe(self, detail: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """The snapshot `{"snapshot": {"jobs": [...], "details": {...}}}` (curve and log tail of the
        active jobs and of those in `detail`), then `{"update": ..., "job": ...}` messages; after an
        engine restart a new snapshot comes first. Blocks; stop iterating to end it."""
        while True:
            try:
                s = self._open()
            except EngineError:
                raise
            except OSError:  # it died again while starting: try once more
                time.sleep(0.1)
                continue
            with s:
                s.settimeout(None)
                s.sendall(channel.encode({"op": "subscribe", "detail": list(detail or [])}))
                buf = s.makefile("rb")
                first = buf.readline()
                if not first:
                    continue
                reply = channel.decode(first)
                if not reply.get("ok"):
                    _raise(reply)
                yield {"snapshot": reply["result"]}
                for line in buf:
                    yield channel.decode(line)
            time.sleep(0.05)  # the engine went away: reconnect (starting it again)


def _read_line(s: socket.socket) -> bytes:
    chunks: list[bytes] = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
        if b.endswith(b"\n"):
            break
    return b"".join(chunks)

