"""The one rule for a job whose process died without finishing, watched by an engine or not.

Why one rule: the same SIGKILL must give the same state whether or not an engine watched, because
only `interrupted` resumes on retry. So the state depends on the job, not on luck:
`interrupted` when it can continue from what it saved (a train job that wrote a checkpoint; a sweep
or pipeline coordinator, whose study/state file is its checkpoint), otherwise `failed`; and the
reason says what the kernel or the worker said: the signal, OOM when the cgroup counted an OOM kill
while the job ran, disk full (the worker's EXIT_DISK_FULL), or the traceback's message.
"""

from __future__ import annotations

import signal as _signal
from pathlib import Path

from engine.state import Status

#: The worker's exit code when it stopped on ENOSPC (EX_TEMPFAIL: free space, then retry).
EXIT_DISK_FULL = 75
#: Kinds that resume by design from their own state file (engine.scheduler.COORDINATOR_KINDS).
SELF_RESUMING = frozenset({"sweep", "pipeline"})
_MEMORY_EVENTS = Path("/sys/fs/cgroup/memory.events")


def oom_kills(path: Path = _MEMORY_EVENTS) -> int | None:
    """The cgroup's OOM-kill count (cgroup v2 `memory.events`), or None where there is none."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


def death_reason(status_reason: str, code: int | None, sig: int | None, *, error: str | None = None,
                 oom_before: int | None = None, oom_now: int | None = None) -> str:
    """Why the process ended, in words: the backend's `status_reason` ("killed by signal SIGKILL
    (9)", "exit code 3", ...) made specific where the cause is known."""
    if code == EXIT_DISK_FULL:
        return "disk full (ENOSPC): the worker stopped; free space and retry" + (f" ({error})" if error else "")
    what = status_reason
    if sig == _signal.SIGKILL and oom_before is not None and oom_now is not None and oom_now > oom_before:
        what = f"killed by the kernel's OOM killer (out of memory): {status_reason}"
    return f"{error} ({what})" if error else what


def dead_state(kind: str, checkpointed: bool) -> Status:
    """interrupted when the job can resume from what it saved, else failed."""
    return Status.INTERRUPTED if checkpointed or kind in SELF_RESUMING else Status.FAILED


__all__ = ["EXIT_DISK_FULL", "SELF_RESUMING", "dead_state", "death_reason", "oom_kills"]
