"""The environment a worker process starts with: its workspace, heartbeat, cancel grace, cores and GPU.

Why its own function: every backend that starts a worker on this host gets the same environment,
whatever placed it (the engine's poller at launch, the bench that compares thread caps). The
engine's own `env` (tests' hooks, `--backend` settings) goes on top of the parent's environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from engine.gpu import Telemetry, pin_env
from engine.paths import ENV_WORKSPACE
from engine.scheduler import Placement
from engine.threads import thread_env
from engine.worker import ENV_GRACE, ENV_HEARTBEAT


def worker_env(placement: Placement, *, workspace: Path, heartbeat_s: float, cancel_grace_s: float,
               telemetry: Telemetry | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker placed on a CPU slot or one GPU."""
    env = dict(os.environ)
    env.update(extra or {})
    env[ENV_WORKSPACE] = str(workspace)
    env[ENV_HEARTBEAT] = f"{heartbeat_s:g}"
    # The worker gives up slightly before the engine's SIGKILL, so it can still write exit.json.
    env[ENV_GRACE] = f"{max(0.1, cancel_grace_s * 0.8):g}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(thread_env(placement.threads))  # the cores it was admitted for, not the machine's
    env.update(pin_env(placement.gpu, telemetry, hide_gpus=telemetry is not None and telemetry.available))
    return env
