"""The Backend protocol: how the engine starts, stops, finds and watches a job's process.

The engine only ever holds an opaque `Handle`; everything process-specific (pid, process group,
start time, waitpid) stays inside the local backend, so a Ray backend (actor/task refs) plugs in
by implementing the same four calls. Every call is synchronous and quick (no blocking waits):
the engine's single poller calls `poll` for each running job every tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class Backend(Protocol):
    name: str

    def submit(self, spec: JobSpec, job_dir: Path, env: dict[str, str]) -> Handle:
        """Start the job (its spec.json is already written in job_dir); return at once."""
        ...

    def cancel(self, handle: Handle, grace_s: float) -> None:
        """Ask the job to stop now; force it after `grace_s` (enforced by later `poll` calls)."""
        ...

    def attach(self, job_id: str, job_dir: Path) -> Handle | None:
        """Find a job started by an earlier engine; None when it is no longer running."""
        ...

    def poll(self, handle: Handle) -> ExitStatus | None:
        """None while the job runs; its ExitStatus once it has ended."""
        ...

    def owns_pid(self, handle: Handle, pid: int) -> bool:
        """Whether a (GPU) process pid belongs to this job (its process or its children)."""
        ...

    # Optional: `exit_fd(handle) -> int | None`, a file descriptor (owned by the caller) that
    # becomes readable when the job ends; the engine then wakes at once instead of at its next poll.
