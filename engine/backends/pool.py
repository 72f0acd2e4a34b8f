"""Warm workers for short jobs: the local backend, with baseline/validate/compare/regression/
calibrate/forecast jobs run by long-lived `engine.pool_worker` processes instead of one new
interpreter each (see that module for why and for the protocol).

Train, sweep and pipeline jobs keep one process per job (`LocalBackend`): isolation, resumable
checkpoints, and coordinators that wait for hours.

A worker is started on demand and reused for jobs whose start-up environment matches its own
(`_profile`: the device pinning and thread caps, which CUDA and the BLAS libraries read only when
they start); it runs one job at a time and is closed after `idle_s` without work (or with the
engine: end of stdin). A pooled job's `pid.json` names its worker (`pooled: true`), so an engine
started later re-attaches to it like to any job: running while the worker lives and the job has no
`exit.json`.

Cancel: the job's `cancel.request` file (the worker turns it into the job's SIGTERM: cooperative
stop, forced exit after the grace); if the job still runs `grace_s` later the worker's process
group is killed. Either way that worker is not reused: the next job gets a new one. A worker that dies (crash, OOM kill, SIGKILL)
fails only the job it was running, with how it died; the engine's stale-heartbeat warning covers a
hang as for any job, and cancelling a hung job kills its worker.

GPU memory: a warm worker's CUDA context and cached models stay resident between jobs. NVML
counts them as used memory on that GPU, so the scheduler's free-memory admission already sees
them, and the job running in the worker is credited with the worker's process memory
(`owns_pid`). Models kept warm are bounded by engine.forecasters.cache.

Off switch: `FORECAST_WARM=0` (the CLI's `--no-warm`) makes `backend_from_env` return the plain
local backend.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.backends.base import ExitStatus, Handle
from engine.backends.local import LocalBackend, _create_time, describe_exit, pid_alive
from engine.jobs import JobDir, JobSpec
from engine.threads import ENV_THREADS, THREAD_ENV_VARS
from engine.worker import EXIT_CANCELLED
from store.atomic import atomic_write_json, read_json

ENV_WARM = "FORECAST_WARM"
ENV_WARM_IDLE = "FORECAST_WARM_IDLE_S"
#: Job kinds that run in warm workers: short, stateless between jobs, no checkpoint to resume.
POOL_KINDS: frozenset[str] = frozenset({"baseline", "validate", "compare", "regression", "calibrate", "forecast"})
#: Environment entries a worker process must have from its start (read once by CUDA / BLAS).
PROFILE_VARS: tuple[str, ...] = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "FORECAST_DEVICE", ENV_THREADS,
                                 *THREAD_ENV_VARS)
DEFAULT_IDLE_S = 300.0
POOL_LOG = "pool.log"


def warm_enabled(env: dict[str, str] | None = None) -> bool:
    """The pool is on unless FORECAST_WARM is 0/false/no/off."""
    raw = (env if env is not None else os.environ).get(ENV_WARM, "1").strip().lower()
    return raw not in ("0", "false", "no", "off")


def _profile(env: dict[str, str]) -> tuple[str, ...]:
    return tuple(env.get(k, "") for k in PROFILE_VARS)


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    profile: tuple[str, ...]
    create_time: float | None
    job: str | None = None
    idle_since: float = field(default_factory=time.time)
    jobs_run: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def drain(self) -> None:
        """Discard the wake-up lines waiting on the worker's stdout (non-blocking)."""
        assert self.proc.stdout is not None
        with contextlib.suppress(BlockingIOError, OSError, ValueError):
            while os.read(self.proc.stdout.fileno(), 65536):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # end of stdin: the worker exits after the job in hand


class PooledBackend(LocalBackend):
    """LocalBackend whose short jobs run in warm workers (see the module docstring)."""

    name = "local"  # the same job records and recovery as the local backend

    def __init__(self, python: str | None = None, *, idle_s: float | None = None,
                 kinds: frozenset[str] = POOL_KINDS, log_dir: Path | None = None) -> None:
        super().__init__(python)
        if idle_s is None:
            idle_s = float(os.environ.get(ENV_WARM_IDLE, DEFAULT_IDLE_S))
        self.idle_s = idle_s
        self.kinds = kinds
        self.log_dir = log_dir
        self._workers: list[_Worker] = []
        self.started = 0  # workers started so far (tests and the bench read it)

    # ---- workers ---------------------------------------------------------------------------------
    def _spawn(self, env: dict[str, str], log: Path) -> _Worker:
        with open(log, "ab") as err:
            proc = subprocess.Popen(
                [self.python, "-m", "engine.pool_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, env=env, start_new_session=True, close_fds=True,
            )
        assert proc.stdout is not None
        fl = fcntl.fcntl(proc.stdout.fileno(), fcntl.F_GETFL)
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.started += 1
        w = _Worker(proc=proc, profile=_profile(env), create_time=_create_time(proc.pid))
        self._workers.append(w)
        return w

    def _idle_worker(self, profile: tuple[str, ...]) -> _Worker | None:
        for w in self._workers:
            if w.job is None and w.profile == profile and w.alive():
                return w
        return None

    def reap(self, now: float | None = None) -> None:
        """Forget dead workers; close those idle for longer than `idle_s`."""
        now = time.time() if now is None else now
        keep = []
        for w in self._workers:
            if not w.alive():
                w.drain()
                continue
            if w.job is None and now - w.idle_since > self.idle_s:
                w.close()
                continue
            keep.append(w)
        self._workers = keep

    def workers(self) -> list[dict[str, object]]:
        """The live warm workers: pid, job in hand (None when idle), jobs run."""
        return [{"pid": w.pid, "job": w.job, "jobs_run": w.jobs_run} for w in self._workers if w.alive()]

    def close(self) -> None:
        """Close every worker (each ends after the job in hand; running jobs keep running)."""
        for w in self._workers:
            w.close()
        self._workers = []

    def _worker_of(self, handle: Handle) -> _Worker | None:
        for w in self._workers:
            if w.pid == handle.info.get("pid") and w.job == handle.job_id:
                return w
        return None

    # ---- Backend ---------------------------------------------------------------------------------
    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Handle:
        if spec.kind not in self.kinds:
            return super().submit(spec, job_dir, env)
        jd = JobDir(Path(job_dir))
        self.reap()
        profile = _profile(env)
        w = self._idle_worker(profile)
        if w is None:
            log = (self.log_dir or jd.path.parent.parent) / POOL_LOG  # the workspace folder
            w = self._spawn(env, log)
        w.drain()
        w.job = spec.id
        w.jobs_run += 1
        info = {"pid": w.pid, "pgid": w.pid, "create_time": w.create_time, "launched_at": time.time(),
                "pooled": True, "worker_jobs": w.jobs_run}
        atomic_write_json(jd.pid, info)
        assert w.proc.stdin is not None
        try:
            w.proc.stdin.write((json.dumps({"job_dir": str(jd.path), "env": env}) + "\n").encode())
            w.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            w.job = None
            raise RuntimeError(f"warm worker {w.pid} is gone: {exc}") from None
        return Handle(job_id=spec.id, job_dir=jd.path, info=info, pid=w.pid)

    def cancel(self, handle: Handle, grace_s: float) -> None:
        if not handle.info.get("pooled"):
            return super().cancel(handle, grace_s)
        handle.info["kill_at"] = time.time() + max(0.0, grace_s)
        with contextlib.suppress(OSError):
            JobDir(handle.job_dir).cancel.touch()

    def poll(self, handle: Handle) -> ExitStatus | None:
        if not handle.info.get("pooled"):
            return super().poll(handle)
        jd = JobDir(handle.job_dir)
        w = self._worker_of(handle)
        if w is not None:
            w.drain()
            alive = w.alive()
        else:  # re-attached after an engine restart: not our child
            alive = pid_alive(handle.info.get("pid", -1), handle.info.get("create_time"))
        data = read_json(jd.exit)
        if data is not None and isinstance(data.get("code"), int):
            code = data["code"]
            if w is not None:
                w.job = None
                w.idle_since = time.time()
                if not alive or code == EXIT_CANCELLED or handle.info.get("kill_at") is not None:
                    # A cancelled job's worker ends itself, and one asked to cancel as its job was ending
                    # may still act on that request (a forced exit after the grace): never reuse either.
                    self._forget(w)
                    self._signal_group(handle, signal.SIGKILL)
            return ExitStatus(code=code, reason=describe_exit(code, None))
        if alive:
            kill_at = handle.info.get("kill_at")
            if kill_at is not None and time.time() >= kill_at:
                self._signal_group(handle, signal.SIGKILL)  # the worker goes; a new one serves the next job
            return None
        # The worker died with this job in hand and no exit.json: a crash, an OOM kill, a SIGKILL.
        status = ExitStatus(code=None)
        if w is not None:
            rc = w.proc.returncode
            status = ExitStatus(code=rc, signal=-rc if rc is not None and rc < 0 else None)
            self._forget(w)
        self._signal_group(handle, signal.SIGKILL)  # its children must not keep memory
        status.reason = describe_exit(status.code, status.signal)
        return status

    def _forget(self, w: _Worker) -> None:
        w.close()
        with contextlib.suppress(ValueError):
            self._workers.remove(w)

    def exit_fd(self, handle: Handle) -> int | None:
        """Pooled: the worker's stdout, readable when it reports a job done (or dies)."""
        if not handle.info.get("pooled"):
            return super().exit_fd(handle)
        w = self._worker_of(handle)
        if w is None or w.proc.stdout is None:
            return None
        try:
            return os.dup(w.proc.stdout.fileno())
        except OSError:
            return None


__all__ = ["ENV_WARM", "ENV_WARM_IDLE", "POOL_KINDS", "PooledBackend", "warm_enabled"]
