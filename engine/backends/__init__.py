"""Where job processes run. `LocalBackend` (detached subprocesses) is the default; a Ray backend
implements the same `Backend` protocol later without the engine changing."""

from engine.backends.base import Backend, ExitStatus, Handle

__all__ = ["Backend", "ExitStatus", "Handle", "get_backend"]


def get_backend(name: str = "local", **kw: object) -> Backend:
    """Backend by name; imports lazily so a missing optional extra only fails when chosen."""
    if name == "local":
        from engine.backends.local import LocalBackend

        return LocalBackend(**kw)  # type: ignore[arg-type]
    raise ValueError(f"unknown backend {name!r}; available: local")
