"""The Backend base class: how the engine starts, stops, finds and watches a job's process.

The engine only ever holds an opaque `Handle`; everything process-specific (pid, process group,
start time, waitpid) stays inside the local backend, so a Ray backend (actor/task refs) plugs in
by implementing the same calls. Every call is synchronous and quick (no blocking waits):
the engine's single poller calls `poll` for each running job every tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: `forecast-console`'s launch reads ENV_BACKEND without the spec's validation
    from engine.jobs import JobSpec


@dataclass
class Handle:
    """A running job as the backend knows it. `info` is backend-private (JSON-able)."""

    job_id: str
    job_dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None  # for display only; None where the backend has no local pid
    attached: bool = False  # True when found again after an engine restart (not our child)


@dataclass
class ExitStatus:
    """How a job's process ended. `code` None means the backend could not learn it."""

    code: int | None
    signal: int | None = None
    reason: str = ""  # human-readable: "exit code 3", "killed by signal SIGKILL (9)", ...

    @property
    def ok(self) -> bool:
        return self.code == 0


class Backend:
    """Where jobs run. Subclasses implement the five calls; the class attributes declare what a
    backend can do, so the engine never probes for optional methods.

    Abilities (class attributes, overridden by subclasses that have them):
    - `schedules_resources`: the backend admits jobs itself (Ray: num_cpus/num_gpus), so the engine
      passes no local telemetry to the scheduler and hands over up to `max_in_flight` jobs at once;
    - `has_exit_fd`: `exit_fd(handle)` gives a file descriptor that becomes readable when the job
      ends, so the engine wakes at once instead of at its next poll;
    - `runs_remote`: jobs may run on another machine (no local pid to show or signal).
    """

    name: str = "backend"
    schedules_resources: bool = False
    max_in_flight: int = 64
    has_exit_fd: bool = False
    runs_remote: bool = False

    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Handle:
        """Start the job (its spec.json is already written in job_dir); return at once."""
        raise NotImplementedError

    def cancel(self, handle: Handle, grace_s: float) -> None:
        """Ask the job to stop now; force it after `grace_s` (enforced by later `poll` calls)."""
        raise NotImplementedError

    def attach(self, job_id: str, job_dir: Path) -> Handle | None:
        """Find a job started by an earlier engine; None when it is no longer running."""
        raise NotImplementedError

    def poll(self, handle: Handle) -> ExitStatus | None:
        """None while the job runs; its ExitStatus once it has ended."""
        raise NotImplementedError

    def revoke_launch(self, job_id: str, job_dir: Path, launch: int) -> bool:
        """For a job found recorded as running with no live process and no exit status: make launch
        `launch` unable to start from now on and return True when its worker provably never started
        (engine.launches), False when that cannot be shown (the dead-job rule then applies)."""
        return False

    def owns_pid(self, handle: Handle, pid: int) -> bool:
        """Whether a (GPU) process pid belongs to this job (its process or its children)."""
        return False

    def close(self) -> None:
        """Release what the backend keeps between jobs (warm workers); running jobs keep running.
        Called when the engine stops."""

    def exit_fd(self, handle: Handle) -> int | None:
        """A file descriptor (owned by the caller) readable when the job ends; None when unsupported
        (only called when `has_exit_fd`)."""
        return None
