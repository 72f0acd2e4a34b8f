"""`forecast-console engine start | stop | status`: the workspace's engine service.

Any command that queues work starts the service on demand, so `start` is only needed to choose
its settings (CPU slots, idle time) or to keep it warm; it ends by itself after `--idle` seconds
with nothing queued or running and no client connected. `stop` ends it now: running jobs keep
running, and the next engine re-attaches them.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.client import JobClient


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("engine", help="the workspace's engine service (start | stop | status)",
                              description="The engine service owns the queue and the store of one workspace. "
                              "Clients (consoles, headless commands) start it on demand; it exits when idle.")
    sub = p.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    s = sub.add_parser("start", help="start the service (no-op when it runs)")
    s.add_argument("--cpu-slots", type=int, default=None, help="concurrent CPU jobs (default 2)")
    s.add_argument("--idle", type=float, default=None, metavar="S",
                   help="seconds idle before it exits (default 30, or $FORECAST_ENGINE_IDLE_S)")
    s.set_defaults(func=cmd_start)
    s = sub.add_parser("stop", help="stop the service (jobs keep running)")
    s.set_defaults(func=cmd_stop)
    s = sub.add_parser("status", help="is a service running, and what it holds")
    s.add_argument("--json", action="store_true", help="print the status as JSON")
    s.set_defaults(func=cmd_status)


def _client(cpu_slots: int | None = None) -> JobClient:
    from engine import paths
    from engine.client import JobClient

    return JobClient(paths.workspace_dir(), cpu_slots=cpu_slots)


def cmd_start(args: argparse.Namespace) -> int:
    import os

    from engine.service import ENV_IDLE

    if args.idle is not None:
        if args.idle < 0:
            raise ValueError(f"--idle must be >= 0, got {args.idle:g}")
        os.environ[ENV_IDLE] = f"{args.idle:g}"
    jc = _client(args.cpu_slots)
    started = jc.start()
    info = jc.status() or {}
    print(("started" if started else "already running") + f": engine for {jc.workspace} (pid {info.get('pid')})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    jc = _client()
    if not jc.stop():
        print(f"no engine is running for {jc.workspace}")
        return 0
    print(f"stopped the engine for {jc.workspace} (running jobs keep running)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import json

    jc = _client()
    info = jc.status()
    if args.json:
        print(json.dumps(info or {"running": False}, indent=1))
        return 0 if info else 1
    if info is None:
        print(f"engine: not running for {jc.workspace}")
        return 1
    up = time.time() - float(info.get("started_at") or time.time())
    print(f"engine: running for {info['workspace']} (pid {info['pid']}, up {up:.0f} s, backend {info['backend']}, "
          f"{info['cpu_slots']} CPU slots, exits after {info['idle_s']:g} s idle)")
    print(f"  jobs: {info['running']} running, {info['queued']} queued, {info['jobs']} known; "
          f"{max(0, info['clients'] - 1)} other client(s) connected")
    return 0
