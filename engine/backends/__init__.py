"""Where job processes run: local detached subprocesses (with warm workers for short jobs unless
`FORECAST_WARM=0`) or a Ray cluster, chosen by `$FORECAST_BACKEND`; the engine sees only `Backend`."""

import os
from pathlib import Path

from engine.backends.base import Backend, ExitStatus, Handle

__all__ = ["Backend", "ExitStatus", "Handle", "backend_from_env", "get_backend"]

ENV_BACKEND = "FORECAST_BACKEND"
ENV_RAY_ADDRESS = "FORECAST_RAY_ADDRESS"


def get_backend(name: str = "local", **kw: object) -> Backend:
    """Backend by name; imports lazily so a missing optional extra only fails when chosen."""
    if name == "local":
        from engine.backends.local import LocalBackend

        return LocalBackend(**kw)  # type: ignore[arg-type]
    if name == "ray":
        from engine.backends.ray_backend import RayBackend

        return RayBackend(**kw)  # type: ignore[arg-type]
    raise ValueError(f"unknown backend {name!r}; available: local, ray")


def backend_from_env(workspace: Path) -> Backend:
    """The backend `forecast-console --backend/--address` chose (exported by the CLI), default local,
    with warm workers for short jobs unless `--no-warm` / FORECAST_WARM=0 (engine.backends.pool)."""
    name = os.environ.get(ENV_BACKEND, "local") or "local"
    if name == "ray":
        return get_backend("ray", workspace=workspace, address=os.environ.get(ENV_RAY_ADDRESS) or None)
    if name == "local":
        from engine.backends.pool import PooledBackend, warm_enabled

        if warm_enabled():
            return PooledBackend()
    return get_backend(name)
