"""Run provenance: the project's git commit, the versions of the packages that decide what a run
means, and run ids.

Why: a run without provenance cannot be reproduced, and one-second run ids collide. A run id is
UTC time to the millisecond plus 32 random bits; versions are read from package metadata (cheap,
never imports torch) and stored once per distinct set (`env_key`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import secrets
import subprocess
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Distributions whose versions decide what a run means (looked up by metadata, never imported).
TRACKED_PACKAGES: tuple[str, ...] = (
    "forecast-console", "torch", "numpy", "pandas", "scipy", "transformers", "peft",
    "chronos-forecasting", "kronos-finance", "toto-ts", "gluonts", "tinydb",
)

_git_cache: dict[str, str | None] = {}
_versions_cache: dict[str, dict[str, str | None]] = {}
_cache_lock = threading.Lock()


def git_commit(root: Path | None = None) -> str | None:
    """`git rev-parse HEAD` of the project (cached per process); None without git or commits."""
    key = str(root or _PROJECT_ROOT)
    with _cache_lock:
        if key in _git_cache:
            return _git_cache[key]
    commit: str | None = None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=key, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and len(out.stdout.strip()) >= 7:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    with _cache_lock:
        _git_cache[key] = commit
    return commit


def package_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions via importlib.metadata (cheap, and never imports torch)."""
    pk = tuple(packages)
    key = "|".join(pk)
    with _cache_lock:
        if key in _versions_cache:
            return dict(_versions_cache[key])
    out: dict[str, str | None] = {}
    for name in pk:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    with _cache_lock:
        _versions_cache[key] = out
    return dict(out)


def env_key(versions: Mapping[str, str | None]) -> str:
    """A short content hash so identical version sets are stored once (keeps store.json small)."""
    raw = json.dumps(dict(versions), sort_keys=True).encode()
    return hashlib.sha1(raw).hexdigest()[:12]


def new_run_id(model: str) -> str:
    """Sortable and collision-free: UTC time to the millisecond, the model, 32 random bits."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{model}-{secrets.token_hex(4)}"


__all__ = ["TRACKED_PACKAGES", "env_key", "git_commit", "new_run_id", "package_versions"]
