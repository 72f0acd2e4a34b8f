"""The one atomic file write: readers see the old file or the new one, never half of one.

Write to a temp file in the same folder, fsync it, `os.replace` it over the target, then fsync the
folder so the rename itself survives a power cut. Every file that another process reads while it
may be rewritten (the store, promoted configs, job specs, pid/exit files, pipeline state, reports)
goes through here. Stdlib only, so `store` keeps importing nothing of ours and the engine can use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

#: Temp files are `.<name>.<pid>.<random>.tmp` beside their target (hidden, and never a valid name).
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds the entry."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes, *, fsync: bool = True, mode: int | None = None) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a partial one.

    `mode` sets the new file's permission bits (a promotion passes the replaced file's own, so a
    replacement does not silently widen or narrow who may read it)."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_text(path: Path | str, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: Path | str, data: Any, *, fsync: bool = True, **dumps: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, **dumps).encode("utf-8"), fsync=fsync)


def read_json(path: Path | str) -> dict[str, Any] | None:
    """A JSON object from a file, or None when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
