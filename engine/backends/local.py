"""Local backend: each job is `python -m engine.worker <job_dir>` in its own session.

Why a session (`start_new_session=True`): the job survives the console exiting or being killed,
and its whole process group (worker + any children, e.g. data-loader processes) can be
signalled at once on cancel. stdout/stderr go to `jobs/<id>/stderr.log` (not a pipe: nobody
has to drain it). `pid.json` records pid, process group and the kernel's start time so a later
engine can tell our still-running worker from an unrelated process that reused the pid; where an
engine died before writing it, the worker's launch claim (engine.launches) names the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine import launches
from engine.backends.base import Backend, ExitStatus, Handle
from engine.jobs import JobDir, JobSpec
from store.atomic import atomic_write_json, read_json

PID_FILE = JobDir.PID
EXIT_FILE = JobDir.EXIT
STDERR_FILE = JobDir.STDERR


def _create_time(pid: int) -> float | None:
    """Process start time (seconds since epoch) or None when there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def pid_alive(pid: int, create_time: float | None) -> bool:
    """True when `pid` runs, is not a zombie, and (if given) started at `create_time`."""
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(p.create_time() - create_time) > 0.05:
            return False  # the pid was reused by another process
        return True
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # exists, owned by someone else: cannot be our worker only if times differ


def describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by signal {name} ({sig})"
    if code is None:
        return "process died (no exit status)"
    return f"exit code {code}"




class LocalBackend(Backend):
    name = "local"
    has_exit_fd = hasattr(os, "pidfd_open")

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Handle:
        job_dir = Path(job_dir)
        with open(job_dir / STDERR_FILE, "ab") as err:
            proc = subprocess.Popen(
                [self.python, "-m", "engine.worker", str(job_dir)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True,
            )
        info = {"pid": proc.pid, "pgid": proc.pid, "create_time": _create_time(proc.pid),
                "launched_at": time.time()}
        atomic_write_json(job_dir / PID_FILE, info)
        self._procs[spec.id] = proc
        return Handle(job_id=spec.id, job_dir=job_dir, info=info, pid=proc.pid)

    def attach(self, job_id: str, job_dir: Path) -> Handle | None:
        info = read_json(Path(job_dir) / PID_FILE)
        if not info or not isinstance(info.get("pid"), int):
            # An engine killed between starting the worker and writing pid.json: the worker's own
            # launch claim (engine.launches) names it.
            info = launches.worker_claim(Path(job_dir))
            if info is None:
                return None
        if not pid_alive(info["pid"], info.get("create_time")):
            return None
        return Handle(job_id=job_id, job_dir=Path(job_dir), info=info, pid=info["pid"], attached=True)

    def revoke_launch(self, job_id: str, job_dir: Path, launch: int) -> bool:
        """The launch claim, taken by this engine before any worker of that launch (engine.launches)."""
        return launches.revoke(Path(job_dir), launch)

    def _signal_group(self, handle: Handle, sig: int) -> None:
        pgid = handle.info.get("pgid")
        if not isinstance(pgid, int) or pgid <= 1:
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cancel(self, handle: Handle, grace_s: float) -> None:
        handle.info["kill_at"] = time.time() + max(0.0, grace_s)
        self._signal_group(handle, signal.SIGTERM)

    def kill(self, handle: Handle) -> None:
        self._signal_group(handle, signal.SIGKILL)

    def poll(self, handle: Handle) -> ExitStatus | None:
        proc = self._procs.get(handle.job_id)
        if proc is not None:
            rc = proc.poll()  # waitpid: exact code or signal for our own child
            if rc is None:
                self._maybe_escalate(handle)
                return None
            del self._procs[handle.job_id]
            status = ExitStatus(code=rc, signal=-rc if rc < 0 else None)
        else:
            if pid_alive(handle.info.get("pid", -1), handle.info.get("create_time")):
                self._maybe_escalate(handle)
                return None
            # Not our child: the exit code is only known if the worker wrote it.
            data = read_json(Path(handle.job_dir) / EXIT_FILE)
            code = data.get("code") if data else None
            status = ExitStatus(code=code if isinstance(code, int) else None)
        # The leader is gone; leftovers in its group (children) must not keep GPU memory.
        self._signal_group(handle, signal.SIGKILL)
        status.reason = describe_exit(status.code, status.signal)
        return status

    def _maybe_escalate(self, handle: Handle) -> None:
        kill_at = handle.info.get("kill_at")
        if kill_at is not None and time.time() >= kill_at:
            self._signal_group(handle, signal.SIGKILL)

    def exit_fd(self, handle: Handle) -> int | None:
        """A pidfd that becomes readable when the job's process ends (Linux >= 5.3), owned by the
        caller; lets the engine wake on exit instead of waiting for its next poll. None if unsupported."""
        pid = handle.info.get("pid")
        if not isinstance(pid, int) or not hasattr(os, "pidfd_open"):
            return None
        try:
            return os.pidfd_open(pid)
        except OSError:
            return None

    def owns_pid(self, handle: Handle, pid: int) -> bool:
        if pid == handle.info.get("pid"):
            return True
        try:
            return os.getpgid(pid) == handle.info.get("pgid")
        except (ProcessLookupError, PermissionError):
            return False
