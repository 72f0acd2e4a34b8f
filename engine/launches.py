"""Whether a launched job's worker started: the claim a worker makes before it does anything.

Why: the engine records a job as `running` before it starts the worker (so a later engine never
launches it a second time), and an engine killed in between leaves a job recorded as running with
no worker, or with a worker process that has not got going yet. Such a job has done nothing and
should go back to the queue, not fail; but "no pid file, no events" does not prove it: a worker
process may exist and be importing its modules while the next engine looks.

The proof is one file per launch, `jobs/<id>/launch-<n>.claim` (n: the job's launch count, which
the engine records with the `running` state and passes in `FORECAST_LAUNCH`), created atomically
(a hard link that fails when the name exists) by whoever comes first:
- the worker, before it writes anything in the job folder (`claim`): it then runs the job; the file
  names its pid, process group and start time, so an engine that finds no pid.json can still
  re-attach to it;
- a recovering engine that finds the job's worker gone (`revoke`): the launch never started and
  never will (a worker of that launch that comes later finds the file and exits without touching
  the job), so the job is queued again, keeping its priority and place.
Exactly one of them wins, so a job is never both requeued and run by the old launch. A job whose
launch kills the engine every time is failed after `MAX_LAUNCHES` revoked launches instead of
being requeued forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.jobs import JobDir
from store.atomic import TMP_PREFIX, TMP_SUFFIX, fsync_dir

#: The launch number a worker claims (set by the engine at launch; absent: no claim, e.g. a worker
#: started by hand or by a backend that runs it elsewhere).
ENV_LAUNCH = "FORECAST_LAUNCH"
#: Launches revoked by engine stops before the job is failed instead of queued again.
MAX_LAUNCHES = 5


def _create(path: Path, info: dict[str, Any]) -> bool:
    """Create `path` holding `info` unless it exists; True when this call created it. The content is
    written to a temporary file first and linked to `path` (atomic, fails when `path` exists), so the
    claim is never seen half-written: who made it is always readable."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(json.dumps(info))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)  # the name must survive a power loss, as the content does
    return True


def _owner(path: Path) -> str | None:
    """Who made the claim at `path` ("worker" or "engine"), None when there is none."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info.get("by") if isinstance(info, dict) else None


def launch_number(env: Mapping[str, str]) -> int | None:
    """The launch a worker was started for (`FORECAST_LAUNCH`), None when it was not set."""
    raw = env.get(ENV_LAUNCH, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def claim(job_dir: Path, launch: int) -> bool:
    """Worker side: True when this worker owns launch `launch` and may run the job; False when an
    engine revoked that launch first (the worker must then leave the job folder untouched)."""
    import psutil

    me = psutil.Process()
    return _create(JobDir(job_dir).launch_claim(launch),
                   {"by": "worker", "pid": me.pid, "pgid": os.getpgid(0), "create_time": me.create_time(),
                    "t": time.time()})


def revoke(job_dir: Path, launch: int) -> bool:
    """Engine side: True when no worker had claimed launch `launch`, which now never starts (also when
    an earlier engine revoked it and was stopped before it recorded the job as queued again)."""
    path = JobDir(job_dir).launch_claim(launch)
    return _create(path, {"by": "engine", "t": time.time()}) or _owner(path) == "engine"


def worker_claim(job_dir: Path) -> dict[str, Any] | None:
    """The newest launch claim a worker made in this folder (pid, pgid, create_time), else None."""
    best: tuple[int, dict[str, Any]] | None = None
    for path in Path(job_dir).glob(JobDir.LAUNCH_CLAIM.format(n="*")):
        n = path.name.removeprefix("launch-").removesuffix(".claim")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (n.isdigit() and isinstance(info, dict) and info.get("by") == "worker"
                and isinstance(info.get("pid"), int) and (best is None or int(n) > best[0])):
            best = (int(n), info)
    return best[1] if best else None


def requeue_reason(launch: int) -> str:
    return (f"queued again: the engine stopped after recording launch {launch} of this job and before its "
            "worker started (it never ran)")


def give_up_reason(launch: int) -> str:
    return (f"not launched again: the engine stopped {launch} times between recording this job as running "
            "and its worker starting (does launching it stop the engine?); retry to try once more")


__all__ = ["ENV_LAUNCH", "MAX_LAUNCHES", "claim", "give_up_reason", "launch_number", "requeue_reason",
           "revoke", "worker_claim"]
