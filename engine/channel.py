"""The one channel between the engine service and its clients: JSON lines over a unix socket.

Address: a Linux abstract-namespace socket named after the workspace's real path
(`\\0forecast-console-engine-<sha256[:32]>`), so it needs no file (no stale socket after a
crash, no 108-byte path limit) and vanishes the moment the service dies — a refused connection
means "no engine", and the next client starts one. The service accepts only peers with its own
uid (SO_PEERCRED).

Messages, one JSON object per line:
  request   {"op": OP, ...args}                       (one request per connection)
  reply     {"ok": true, "result": ...} | {"ok": false, "error": MSG, "type": EXC_CLASS}
  subscribe {"op": "subscribe"} → {"ok": true, "result": {"jobs": [record...], "details": {...}}},
            then one {"update": {job_id, kind, data}, "job": record|null} per change, until either
            side closes. `job` is the job's full record for state/progress/metric/result changes.

Ops: ping, submit{spec}, cancel{job_id}, retry{job_id}, set_priority{job_id, priority},
jobs{}, job{job_id}, detail{job_id, n} (curve + log tail), wait{job_id, timeout}
(returns once the job is final AND its record and results are in the store),
store{method, args, kwargs, hyperparams_dir} (a store write, see STORE_WRITES),
gc{older_than_s, keep_failed, hyperparams_dir} (retention, engine.gc; the applied plan), stop{}.
Records are `engine.persistence.Persistence.record()` dicts (JobState fields + spec, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from store.atomic import atomic_write_json, read_json

#: Store methods a client may ask the engine to call (the engine is the only store writer).
STORE_WRITES: frozenset[str] = frozenset({
    "promote", "rollback", "put_baselines", "put_comparisons", "put_regressions", "set_pick",
    "set_regression_follow_up",
})

#: Exception classes whose message is for the user (the client re-raises them as ValueErrors).
USER_ERRORS: frozenset[str] = frozenset({
    "JobSpecError", "TaskParamError", "StoreError", "StoreLocked", "ValueError", "KeyError", "ValidationError",
    "RecordError", "PromotionError", "TimeoutError",
})

MAX_LINE = 64 * 1024 * 1024  # a snapshot of many jobs is one line

#: `<workspace>/engine.starting.json`: what a service that has not bound its socket yet is doing, when
#: that takes long (a one-off upgrade of the ledger), so the client waiting for it can say so.
STARTING_FILE = "engine.starting.json"


def address(workspace: os.PathLike[str] | str) -> str:
    """The service's socket address for a workspace (abstract namespace: leading NUL)."""
    key = hashlib.sha256(str(Path(workspace).expanduser().resolve()).encode()).hexdigest()[:32]
    return f"\0forecast-console-engine-{key}"


def note_starting(workspace: os.PathLike[str] | str, text: str) -> None:
    """The starting service says what it is doing (each call replaces the last)."""
    atomic_write_json(Path(workspace) / STARTING_FILE, {"pid": os.getpid(), "text": text, "t": time.time()},
                      fsync=False)


def clear_starting(workspace: os.PathLike[str] | str) -> None:
    with contextlib.suppress(OSError):
        (Path(workspace) / STARTING_FILE).unlink()


def starting_note(workspace: os.PathLike[str] | str) -> str | None:
    """What the workspace's starting service last said, None when none is starting (or it died)."""
    info = read_json(Path(workspace) / STARTING_FILE)
    if not info or not isinstance(info.get("pid"), int) or not isinstance(info.get("text"), str):
        return None
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return None  # a service killed while starting
    except PermissionError:
        pass
    return str(info["text"])


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def decode(line: bytes) -> dict[str, Any]:
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("a channel message must be a JSON object")
    return msg


def error_reply(exc: BaseException) -> dict[str, Any]:
    return {"ok": False, "error": str(exc) or type(exc).__name__, "type": type(exc).__name__}
