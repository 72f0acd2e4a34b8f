"""The node side of the Ray backend: the per-job actor body and the job's process.

`JobRunner` is a plain class (made a Ray actor by `RayBackend`), so this module imports without
ray on the driver and in tests; `python -m engine.backends.ray_node --child PPID JOB_DIR` is the
job's process (the worker plus a watchdog that ends it when its actor dies). What runs where, the
shared/shipped modes and cancel are described in engine.backends.ray_backend.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from engine.backends.ray_bundle import ENV_PREFIXES, unpack, zip_dir
from engine.eventlog import ENV_ROTATE
from engine.jobs import JobDir
from store.workspace import Workspace

ENV_LOGICAL_GPUS = "FORECAST_RAY_LOGICAL_GPUS"  # "1": GPUs are Ray bookkeeping only; jobs run on CPU
TERMINAL_TYPES = frozenset({"result", "error"})


class JobRunner:
    """The per-job actor body (made a Ray actor by `RayBackend`; plain class so it imports without ray).

    Methods run on separate threads (max_concurrency > 1): `run` blocks until the worker exits,
    while `read_events`, `cancel` and `info` answer at once.
    """

    def __init__(self, job_id: str, driver_job_dir: str, bundle: bytes, env: dict[str, str],
                 shared: bool | None, linger_s: float) -> None:
        self.job_id = job_id
        self.driver_job_dir = Path(driver_job_dir)
        self.driver_ws = self.driver_job_dir.parent.parent
        self.bundle = bundle
        self.env = env
        self.shared_pref = shared
        self.linger_s = linger_s
        self.mode: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp: Path | None = None
        self.lines: list[str] = []
        self.held: list[str] = []
        self.outcome: dict[str, Any] | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.start_lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------------
    def _decide_mode(self) -> str:
        if self.shared_pref is not None:
            return "shared" if self.shared_pref else "shipped"
        try:
            spec = json.loads(JobDir(self.driver_job_dir).spec.read_text(encoding="utf-8"))
            return "shared" if spec.get("id") == self.job_id else "shipped"
        except (OSError, ValueError):
            return "shipped"

    def _rewrite(self, line: str) -> str:
        assert self.tmp is not None
        local = json.dumps(str(self.tmp / "ws"))[1:-1]
        return line.replace(local, json.dumps(str(self.driver_ws))[1:-1]) if local in line else line

    def _tail(self, path: Path, offset: int) -> int:
        """Move new complete lines of the node's event file into the shipping buffers."""
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return offset
        end = data.rfind(b"\n")
        if end < 0:
            return offset
        new: list[str] = []
        held: list[str] = []
        for raw in data[: end + 1].decode("utf-8", "replace").splitlines():
            if not raw.strip():
                continue
            line = self._rewrite(raw)
            try:
                typ = json.loads(line).get("type")
            except (ValueError, AttributeError):
                typ = None
            (held if typ in TERMINAL_TYPES else new).append(line)
        with self.lock:
            self.lines.extend(new)
            self.held.extend(held)
        return offset + end + 1

    def _linger_then_exit(self) -> None:
        """Why: a detached actor holds its GPU share until killed; if no console collects the
        outcome, leave after `linger_s` so the cluster is not blocked forever."""
        def leave() -> None:
            os._exit(0)
        timer = threading.Timer(self.linger_s, leave)
        timer.daemon = True
        timer.start()

    # -- actor methods -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the worker once (later callers, e.g. a re-attached console, get the same outcome)."""
        with self.start_lock:
            if self.outcome is None and self.proc is None:
                threading.Thread(target=self._run, name="job", daemon=True).start()
                while self.proc is None and not self.done.is_set():
                    time.sleep(0.01)
        self.done.wait()
        assert self.outcome is not None
        return self.outcome

    def _run(self) -> None:
        try:
            self.outcome = self._run_inner()
        except BaseException as exc:  # noqa: BLE001 - the driver must always get an outcome
            self.outcome = {"code": None, "signal": None, "mode": self.mode, "artifacts": None,
                            "reason": f"Ray job runner failed: {type(exc).__name__}: {exc}"}
        finally:
            self.done.set()
            self._linger_then_exit()

    def _run_inner(self) -> dict[str, Any]:
        import ray

        self.mode = self._decide_mode()
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        gpu_ids = ray.get_gpu_ids()
        # Logical GPUs (a CPU-only test or dev cluster started with num_gpus=N): the share still
        # gates admission, but the job must run on the CPU it actually has.
        logical = self.env.get(ENV_LOGICAL_GPUS) == "1"
        env["FORECAST_DEVICE"] = "cuda" if gpu_ids and not logical else "cpu"
        if self.mode == "shared":
            job_dir = self.driver_job_dir
        else:
            self.tmp = Path(tempfile.mkdtemp(prefix=f"forecast-ray-{self.job_id}-"))
            ws = self.tmp / "ws"
            unpack(self.bundle, ws)
            job_dir = JobDir.of(ws, self.job_id).path
            env["FORECAST_WORKSPACE"] = str(ws)
            # The actor ships the node's event file by byte offset and the driver appends the lines to
            # the workspace's own file: the node's file must not rotate (engine.eventlog) under it.
            env[ENV_ROTATE] = "0"
            if (ws / "hyperparams").is_dir():
                env["FORECAST_HYPERPARAMS"] = str(ws / "hyperparams")
            data = env.get("FORECAST_DATA")
            if data and not Path(data).is_dir():
                env.pop("FORECAST_DATA")  # the node's shipped data + the bundle's CSVs are used
        self.bundle = b""
        cmd = [sys.executable, "-m", "engine.backends.ray_node", "--child", str(os.getpid()), str(job_dir)]
        with open(JobDir(job_dir).stderr, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True, close_fds=True)
        events = JobDir(job_dir).events
        offset = 0
        while self.proc.poll() is None:
            if self.mode == "shipped":
                offset = self._tail(events, offset)
            time.sleep(0.1)
        rc = self.proc.returncode
        artifacts = None
        if self.mode == "shipped":
            self._tail(events, offset)
            assert self.tmp is not None
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                node_ws = Workspace(self.tmp / "ws")
                for folder in (node_ws.runs_dir, node_ws.reports_dir):  # what the job made that the driver keeps
                    zip_dir(zf, node_ws.root, folder.name, 1 << 31)
                for path in sorted(job_dir.rglob("*")):  # stderr.log, exit.json, anything else
                    if path.is_file() and path.name not in (JobDir.SPEC, JobDir.EVENTS):
                        zf.write(path, f"jobs/{self.job_id}/{path.relative_to(job_dir).as_posix()}")
            artifacts = buf.getvalue()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return {"code": rc if rc >= 0 else None, "signal": -rc if rc < 0 else None, "mode": self.mode,
                "artifacts": artifacts, "node": socket.gethostname(), "reason": ""}

    def read_events(self, start: int) -> dict[str, Any]:
        """Shipped-mode event lines from index `start`; final lines only once `run` has finished."""
        with self.lock:
            lines = self.lines[start:]
            final = list(self.held) if self.done.is_set() else []
        return {"mode": self.mode, "lines": lines, "final": final, "done": self.done.is_set(),
                "started": self.proc is not None, "pid": self.proc.pid if self.proc else None,
                "node": socket.gethostname()}

    def cancel(self) -> bool:
        """SIGTERM the worker's process group (the worker stops at a safe point and exits 143)."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def child_main(ppid: int, job_dir: str) -> int:
    """Runs in the job's process: the worker, plus a watchdog that ends it when its actor dies.

    Why: `ray.kill` or a crashed actor leaves this process (own session) behind; polling the
    parent pid is the portable way to notice (PDEATHSIG is per-thread and Linux-only).
    """
    def watch() -> None:
        while os.getppid() == ppid:
            time.sleep(0.5)
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # graceful first: the worker writes error{Cancelled}
        except ProcessLookupError:
            return
        time.sleep(float(os.environ.get("FORECAST_RAY_ORPHAN_GRACE_S", "3")))
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="ray-watchdog", daemon=True).start()
    from engine.worker import main

    return main([job_dir])


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    sys.exit(child_main(int(sys.argv[2]), sys.argv[3]))
