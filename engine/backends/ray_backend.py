"""Ray backend: each job runs as one detached Ray actor that starts `engine.worker` on a node.

Why an actor per job, not a plain task: a detached, named actor (`fc-job-<id>` in namespace
`forecast-console`) outlives the console that submitted it, exactly like the local backend's
detached subprocess, so a restarted console re-attaches by name; and a threaded actor can answer
"give me your new event lines" and "stop" while the job runs.

Why the actor starts `python -m engine.worker` as a child instead of calling the task itself:
the job then runs the very same code path as the local backend (heartbeats, SIGTERM → graceful
cancel, `exit.json`), its memory is freed when it ends, and a crash of model code cannot take the
actor (and with it the job's bookkeeping) down.

Resources: the actor asks Ray for `num_cpus = resources.cpus` and `num_gpus` = the job's
`resources.vram_gb` over the GPU size (80 GB by default), rounded UP to 0.05, so small jobs pack
several to a GPU (30 GB → 0.4: two per GPU) and a big one waits for room; Ray does the admission
(`schedules_resources = True` tells the engine not to hold Ray jobs back for local GPUs).

Events and artifacts, two modes decided on the node for each job:
* shared — the driver's `jobs/<id>/spec.json` is visible at the same path on the node (same
  machine, or the workspace on NFS at the same mount point): the worker writes events and
  artifacts straight into the workspace; nothing is shipped.
* shipped — otherwise: the job runs in a temporary workspace on the node, built from a bundle the
  driver sends (spec, the job's symbol CSVs, read-only copies of store.json and ledger.db, promoted configs).
  New event lines are pulled by the driver's poll (`read_events`) and appended to the local
  `jobs/<id>/events.jsonl`, so the engine's tail → state → store path is unchanged. When the
  worker exits, the actor zips `runs/`, `reports/` and the job's `stderr.log`/`exit.json` and the
  driver unpacks them into the workspace BEFORE it appends the final result/error line, so the
  engine never sees a result whose files are not there yet. Paths inside event lines are
  rewritten from the node's temporary workspace to the driver's.

Cancel: `cancel()` SIGTERMs the worker (graceful, it emits `error{Cancelled}` and exits 143);
if it is still running `grace_s` later, `poll` kills the actor (`ray.kill`, the actor form of
`ray.cancel(force=True)`), and a watchdog in the child kills the worker when its actor is gone.
A lost node or killed actor ends the job with `ExitStatus(code=None)`, like a dead process.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.backends.base import Backend, ExitStatus, Handle
from engine.backends.ray_bundle import filter_env, make_bundle, unpack
from engine.backends.ray_node import JobRunner
from engine.events import EventWriter
from engine.jobs import JobDir, JobSpec, Resources

RAY_NAMESPACE = "forecast-console"
ACTOR_PREFIX = "fc-job-"
RAY_INFO_FILE = "ray.json"
GPU_STEP = 0.05
DEFAULT_GPU_GB = 80.0
ENV_GPU_GB = "FORECAST_RAY_GPU_GB"
ENV_SHARED = "FORECAST_RAY_SHARED"  # "1" force shared, "0" force shipped, unset = detect per job
INSTALL_HINT = (
    "the Ray backend needs the optional 'ray' extra: run ./setup.sh --ray "
    "(or: pip install -e '.[ray]')"
)


class RayBackendError(ConnectionError):
    """Ray is missing or unreachable. A ConnectionError (an OSError) so the CLI prints it as one line."""


def import_ray() -> Any:
    """Import ray or raise RayBackendError with the install command (ray is an optional extra)."""
    try:
        import ray
    except ImportError as exc:
        raise RayBackendError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def gpu_fraction(resources: Resources, gpu_mem_gb: float = DEFAULT_GPU_GB) -> float:
    """`num_gpus` for Ray: vram over the GPU size rounded up to 0.05 (whole GPUs above 1).

    Why round up: Ray packs by these numbers only, so under-asking would let two jobs share a GPU
    that cannot hold both. A job with `gpus >= 1` and no vram estimate gets whole GPUs.
    """
    if gpu_mem_gb <= 0:
        raise ValueError(f"GPU memory must be positive, got {gpu_mem_gb!r} GB")
    frac = resources.vram_gb / gpu_mem_gb if resources.vram_gb > 0 else resources.gpus
    if frac <= 0:
        return 0.0
    if frac > 1.0:  # Ray allows fractions only below one GPU
        return float(max(math.ceil(frac - 1e-9), math.ceil(resources.gpus)))
    steps = math.ceil(round(frac / GPU_STEP, 6))
    return round(max(1, steps) * GPU_STEP, 2)


def ray_options(spec: JobSpec, gpu_mem_gb: float = DEFAULT_GPU_GB) -> dict[str, float]:
    """The resources the job's actor asks Ray for."""
    return {"num_cpus": float(spec.resources.cpus), "num_gpus": gpu_fraction(spec.resources, gpu_mem_gb)}


@dataclass
class _Live:
    """Driver-side state of one job's actor."""

    actor: Any
    run_ref: Any
    lines_seen: int = 0
    read_ref: Any = None
    mode: str | None = None
    started: bool = False
    pid: int | None = None
    node: str | None = None
    kill_at: float | None = None
    cancelled: bool = False


class RayBackend(Backend):
    """The `Backend` protocol on a Ray cluster (see the module docstring for what runs where)."""

    name = "ray"
    #: Ray admits jobs by their num_cpus/num_gpus; the engine submits without local GPU checks.
    schedules_resources = True
    #: How many jobs the engine hands to Ray at once (Ray queues those that do not fit yet).
    max_in_flight = 64
    runs_remote = True

    def __init__(self, workspace: Path | str | None = None, address: str | None = None, *,
                 gpu_memory_gb: float | None = None, shared: bool | None = None,
                 linger_s: float = 3600.0, namespace: str = RAY_NAMESPACE,
                 init_kwargs: dict[str, Any] | None = None) -> None:
        self.ray = import_ray()
        # Informational only: every job's workspace is its job_dir's grandparent (as for the worker).
        self.workspace = Path(workspace).resolve() if workspace is not None else None
        gb = gpu_memory_gb if gpu_memory_gb is not None else float(os.environ.get(ENV_GPU_GB, DEFAULT_GPU_GB))
        if gb <= 0:
            raise ValueError(f"GPU memory for the Ray backend must be positive, got {gb} GB")
        self.gpu_memory_gb = gb
        if shared is None and os.environ.get(ENV_SHARED) in ("0", "1"):
            shared = os.environ[ENV_SHARED] == "1"
        self.shared = shared
        self.linger_s = linger_s
        self.namespace = namespace
        self.address = address
        self._live: dict[str, _Live] = {}
        self._runner_cls: Any = None
        if not self.ray.is_initialized():
            kw: dict[str, Any] = {"namespace": namespace, "log_to_driver": False}
            kw.update(init_kwargs or {})
            try:
                self.ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a local Ray instance"
                raise RayBackendError(f"cannot connect to Ray at {where}: {exc}") from None

    # -- helpers -----------------------------------------------------------------------------
    def _runner(self) -> Any:
        if self._runner_cls is None:
            self._runner_cls = self.ray.remote(JobRunner)
        return self._runner_cls

    def _actor_name(self, job_id: str) -> str:
        return ACTOR_PREFIX + job_id

    def _append(self, handle: Handle, lines: list[str]) -> None:
        """A shipped job's new event lines into the workspace's event file, rotated like a local
        worker's (the driver is that file's one writer)."""
        if not lines:
            return
        writer = EventWriter(JobDir(Path(handle.job_dir)).events, handle.job_id)
        try:
            writer.append_lines(lines)
        finally:
            writer.close()

    def _pump(self, handle: Handle, live: _Live) -> None:
        """Non-blocking: take the answer of the last `read_events` call if ready, ask again."""
        ray = self.ray
        if live.read_ref is not None:
            ready, _ = ray.wait([live.read_ref], timeout=0)
            if not ready:
                return
            try:
                rep = ray.get(live.read_ref)
            except self.ray.exceptions.RayError:
                live.read_ref = None
                return
            live.read_ref = None
            live.mode = rep["mode"] or live.mode
            live.started = live.started or bool(rep["started"])
            live.pid = rep["pid"] or live.pid
            live.node = rep["node"]
            if live.mode == "shipped":
                self._append(handle, rep["lines"])
                live.lines_seen += len(rep["lines"])
            if rep["done"]:
                return
        if live.mode != "shared" or not live.started:
            live.read_ref = live.actor.read_events.remote(live.lines_seen)

    # -- the Backend protocol ----------------------------------------------------------------
    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Handle:
        job_dir = Path(job_dir).resolve()
        opts = ray_options(spec, self.gpu_memory_gb)
        bundle = make_bundle(spec, job_dir.parent.parent) if self.shared is not True else b""
        name = self._actor_name(spec.id)
        actor = self._runner().options(
            name=name, namespace=self.namespace, lifetime="detached", max_restarts=0,
            max_concurrency=4, num_cpus=opts["num_cpus"], num_gpus=opts["num_gpus"],
        ).remote(spec.id, str(job_dir), bundle, filter_env(env), self.shared, self.linger_s)
        live = _Live(actor=actor, run_ref=actor.run.remote())
        self._live[spec.id] = live
        info = {"actor": name, "namespace": self.namespace, "address": self.address,
                "submitted_at": time.time(), **opts}
        (job_dir / RAY_INFO_FILE).write_text(json.dumps(info), encoding="utf-8")
        handle = Handle(job_id=spec.id, job_dir=job_dir, info=info, pid=None)
        self._pump(handle, live)
        return handle

    def attach(self, job_id: str, job_dir: Path) -> Handle | None:
        job_dir = Path(job_dir)
        try:
            info = json.loads((job_dir / RAY_INFO_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # not a Ray job
        try:
            actor = self.ray.get_actor(info["actor"], namespace=info.get("namespace", self.namespace))
        except (ValueError, KeyError):
            return None  # the actor is gone: the job ended (or its node died) while we were away
        seen = 0
        try:
            with open(JobDir(job_dir).events, "rb") as fh:
                seen = sum(1 for raw in fh if raw.endswith(b"\n") and raw.strip())
        except FileNotFoundError:
            pass
        live = _Live(actor=actor, run_ref=actor.run.remote(), lines_seen=seen)
        self._live[job_id] = live
        return Handle(job_id=job_id, job_dir=job_dir, info=info, pid=None, attached=True)

    def cancel(self, handle: Handle, grace_s: float) -> None:
        live = self._live.get(handle.job_id)
        if live is None:
            return
        live.cancelled = True
        # No _pump here: cancel runs on the engine's loop while poll runs in its I/O thread, and
        # only poll may consume event replies (else lines could be appended twice).
        if not live.started:  # still waiting for resources (as of the last poll): nothing to stop gracefully
            self.ray.kill(live.actor, no_restart=True)
            live.kill_at = time.time()
            return
        live.actor.cancel.remote()
        live.kill_at = time.time() + max(0.0, grace_s)

    def kill(self, handle: Handle) -> None:
        """Force: the actor form of ray.cancel(force=True); the worker's watchdog follows it."""
        live = self._live.get(handle.job_id)
        if live is not None:
            self.ray.kill(live.actor, no_restart=True)

    def poll(self, handle: Handle) -> ExitStatus | None:
        ray = self.ray
        live = self._live.get(handle.job_id)
        if live is None:
            return ExitStatus(code=None, reason="unknown to the Ray backend (not submitted or attached here)")
        self._pump(handle, live)
        handle.pid = live.pid if live.node == socket.gethostname() else None
        ready, _ = ray.wait([live.run_ref], timeout=0)
        if not ready:
            if live.kill_at is not None and time.time() >= live.kill_at:
                self.kill(handle)
                live.kill_at = float("inf")
            return None
        try:
            out = ray.get(live.run_ref)
        except ray.exceptions.RayError as exc:
            status = self._dead_status(live, exc)
        else:
            if out.get("artifacts"):
                unpack(out["artifacts"], Path(handle.job_dir).resolve().parent.parent)
            if out.get("mode") == "shipped":
                self._drain_final(handle, live)
            code, sig = out.get("code"), out.get("signal")
            from engine.backends.local import describe_exit

            status = ExitStatus(code=code, signal=sig, reason=out.get("reason") or describe_exit(code, sig))
        try:
            ray.kill(live.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone is fine
            pass
        del self._live[handle.job_id]
        return status

    def _drain_final(self, handle: Handle, live: _Live) -> None:
        """After the artifacts are in place: the remaining lines, then the held result/error."""
        try:
            rep = self.ray.get(live.actor.read_events.remote(live.lines_seen), timeout=30)
        except self.ray.exceptions.RayError:
            return
        self._append(handle, rep["lines"] + rep["final"])
        live.lines_seen += len(rep["lines"])

    def _dead_status(self, live: _Live, exc: BaseException) -> ExitStatus:
        if live.cancelled:
            return ExitStatus(code=None, signal=signal.SIGKILL, reason="killed by the Ray backend after cancel")
        kind = type(exc).__name__
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return ExitStatus(code=None, reason=f"Ray actor died ({kind}: {first[:300]}): node lost or process killed")

    def owns_pid(self, handle: Handle, pid: int) -> bool:
        live = self._live.get(handle.job_id)
        if live is None or live.pid is None or live.node != socket.gethostname():
            return False
        if pid == live.pid:
            return True
        try:
            return os.getpgid(pid) == live.pid
        except (ProcessLookupError, PermissionError):
            return False

    def shutdown(self) -> None:
        """Disconnect from Ray; detached job actors keep running (re-attach on the next start)."""
        self._live.clear()
        if self.ray.is_initialized():
            self.ray.shutdown()


def make_backend(name: str, address: str | None, workspace: Path | str) -> Any:
    """The backend the CLI's `--backend/--address` ask for (lazy: ray is only imported for "ray")."""
    if name == "ray":
        return RayBackend(workspace, address=address)
    if address:
        raise ValueError("--address only applies to --backend ray")
    from engine.backends import get_backend

    return get_backend(name)

