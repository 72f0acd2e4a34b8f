"""Crash-safe TinyDB storage and the workspace write lock.

Why this exists: a JSON file rewritten in place with no lock is left truncated by a crash mid-write
and interleaved by a second writer. Here:

* every write goes to a temp file in the same folder, is flushed and fsynced, then `os.replace`d over
  `store.json`, and the folder is fsynced — a reader (or a process started after a SIGKILL) sees either
  the old whole file or the new whole file, never a mix;
* one writer per workspace, enforced with `fcntl.flock` on `store.lock` (released by the kernel when
  the holder dies, so there is no stale-lock clean-up); the lock file names the holder (pid, host,
  start time) so a refused second opener can say who owns it;
* the writer keeps the parsed data in memory — it is the only writer, so its copy is authoritative —
  and reads cost no file I/O; a read-only opener re-reads the file only when its inode/mtime/size
  changed;
* a file that does not parse is never treated as empty: it is copied to
  `store.json.corrupt-<timestamp>` and a `StoreError` names both files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from store.atomic import TMP_PREFIX as _TMP_PREFIX
from store.atomic import TMP_SUFFIX as _TMP_SUFFIX
from store.atomic import atomic_write_bytes, fsync_dir  # noqa: F401 - re-exported for store.promotion

#: Bumped when the layout of store.json changes; MIGRATIONS[n] turns version n data into n + 1.
#: Version 2: jobs, runs and envs live in the SQLite ledger (the Store moves a version-1 file's
#: tables there on first open; the bump makes an older program refuse the file instead of seeing
#: a workspace without jobs or runs).
SCHEMA_VERSION = 2
META_TABLE = "_meta"
#: Tables of a version-1 store.json that the ledger (store/ledger.py) holds now.
LEDGER_TABLES: tuple[str, ...] = ("jobs", "runs", "envs")


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version-1 picks were keyed by (model, symbol); version 2 keys them by the decision identity,
    so each gets the horizon it was made at (its own, its windows', or its source run's). A pick
    whose horizon cannot be known is dropped (the Store keeps the whole v1 file as
    store.json.pre-ledger) rather than filed under a guessed horizon."""
    runs = {r.get("run_id"): r for r in (data.get("runs") or {}).values() if isinstance(r, dict)}
    best = data.get("best") or {}
    for doc_id in list(best):
        d = best[doc_id]
        if not isinstance(d, dict) or "horizon" in d:
            continue
        cur: dict[str, Any] = d["current"] if isinstance(d.get("current"), dict) else {}
        src = runs.get(cur.get("source_run")) or {}
        h = cur.get("horizon") or (cur.get("windows") or {}).get("horizon") or (src.get("hyperparams") or {}).get("horizon")
        if isinstance(h, int) and not isinstance(h, bool) and h >= 1:
            d["horizon"] = h
            cur.setdefault("horizon", h)
        else:
            del best[doc_id]
    return data


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}

#: Fields every document of a table has (the Store writes them all; readers index them directly;
#: jobs and runs for a version-1 file that is about to be migrated).
#: A document without them is a hand edit or a foreign file, refused like a truncated one rather
#: than crashing whichever command first reads it.
DOC_FIELDS: dict[str, tuple[str, ...]] = {
    "jobs": ("id",),
    "runs": ("run_id", "model", "symbol", "hyperparams", "metrics", "created", "created_at"),
    "baselines": ("symbol", "model", "horizon", "span"),
    "comparisons": ("symbol", "horizon", "model"),
    "regressions": ("model", "symbol", "metric"),
    "best": ("model", "symbol", "horizon", "current"),
    "promotions": ("model", "symbol"),
}
#: What a version-1 file's documents had (checked before it is migrated).
V1_DOC_FIELDS: dict[str, tuple[str, ...]] = {**DOC_FIELDS, "best": ("model", "symbol", "current")}
_DICT_FIELDS: frozenset[str] = frozenset({"hyperparams", "metrics", "current"})

_RACY_S = 2.0  # a file modified this recently may hide a change behind an equal (inode, mtime, size)


class StoreError(RuntimeError, ValueError):
    """A store problem the user can act on: a corrupt file, a bad input, a read-only store.

    A RuntimeError per the contract, and also a ValueError so `forecast-console` prints it as a
    one-line user error (exit 2) like every other bad-input error.
    """


#: What the lock error tells a writer to do (a console, already a reader, leaves it out: console.services).
LOCK_ADVICE = "close that console or open this one read-only"


class StoreLocked(StoreError):
    """Another process owns the workspace for writing."""


# --------------------------------------------------------------------------------------------------
# Temp files a killed writer left (the atomic write itself is store.atomic)
# --------------------------------------------------------------------------------------------------


def remove_stale_temps(path: Path) -> int:
    """Delete temp files a killed writer left beside `path` (only the lock holder may call this)."""
    n = 0
    for p in path.parent.glob(f"{_TMP_PREFIX}{path.name}.*{_TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n


_enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps(data: Any) -> bytes:
    """Compact, NaN-free JSON: the file is rewritten on every write, so every byte costs."""
    return _enc(data).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# The write lock
# --------------------------------------------------------------------------------------------------


class WorkspaceLock:
    """An exclusive, non-blocking `flock` on `<workspace>/store.lock` naming its holder."""

    def __init__(self, lock_file: Path) -> None:
        self.path = Path(lock_file)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLocked(self._locked_message()) from None
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def holder(self) -> dict[str, Any] | None:
        """Who holds (or last held) the lock, as written in the lock file."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None

    def _locked_message(self) -> str:
        h = self.holder() or {}
        who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}"
        since = h.get("started_iso") or "?"
        return (f"workspace {self.path.parent} is open for writing by another process ({who}, since {since}); "
                + LOCK_ADVICE)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------------------------------
# TinyDB storage
# --------------------------------------------------------------------------------------------------


def _backup_corrupt(path: Path, raw: bytes) -> Path | None:
    """Copy a bad store aside once (a reader that keeps retrying must not fill the disk)."""
    for old in sorted(path.parent.glob(f"{path.name}.corrupt-*")):
        try:
            if old.stat().st_size == len(raw) and old.read_bytes() == raw:
                return old
        except OSError:
            continue
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.corrupt-{stamp}")
    i = 1
    while backup.exists():
        backup = path.with_name(f"{path.name}.corrupt-{stamp}-{i}")
        i += 1
    try:
        shutil.copy2(path, backup)
    except OSError:
        return None
    return backup


def _bad_document(data: dict[str, Any]) -> str | None:
    """Why a document of a known table is unusable (not an object, a field missing), or None."""
    fields = V1_DOC_FIELDS if schema_version_of(data) < 2 else DOC_FIELDS
    for table, docs in data.items():
        need = fields.get(table, ())
        for doc_id, doc in docs.items():
            if not isinstance(doc, dict):
                return f"document {doc_id} of table {table!r} is not a JSON object"
            missing = [f for f in need if f not in doc]
            if missing:
                return f"document {doc_id} of table {table!r} lacks {', '.join(missing)}"
            wrong = [f for f in need if f in _DICT_FIELDS and not isinstance(doc[f], dict)]
            if wrong:
                return f"document {doc_id} of table {table!r}: {', '.join(wrong)} is not a JSON object"
    return None


def load_file(path: Path, *, backup: bool = True) -> tuple[dict[str, Any] | None, bytes]:
    """Parse `store.json` → (data, raw bytes); data None if it does not exist.

    Corrupt/truncated → StoreError naming the file, after copying it to a `.corrupt-<timestamp>` backup.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, b""
    reason: str | None = None
    data: Any = None
    if not raw.strip():
        reason = "the file is empty"
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            reason = f"it is not valid JSON ({exc}); it may be truncated"
        else:
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                reason = "it is JSON but not a table map"
            else:
                reason = _bad_document(data)
    if reason is not None:
        saved = _backup_corrupt(path, raw) if backup else None
        where = f"; a copy was kept at {saved}" if saved else ""
        raise StoreError(
            f"store file {path} is corrupt: {reason}{where}. It was left unchanged: restore it from the "
            "backup or move it away to start a new store"
        )
    return data, raw


def schema_version_of(data: dict[str, Any]) -> int:
    meta = data.get(META_TABLE, {}).get("1")
    if not meta:
        return 0 if any(k != META_TABLE for k in data) else SCHEMA_VERSION
    v = meta.get("schema_version")
    return int(v) if isinstance(v, int) else 0


def migrate(data: dict[str, Any], path: Path) -> tuple[dict[str, Any], bool]:
    """Bring `data` to SCHEMA_VERSION; returns (data, changed). A newer file is refused."""
    version = schema_version_of(data)
    if version > SCHEMA_VERSION:
        raise StoreError(f"store file {path} has schema version {version}, newer than this program "
                         f"understands ({SCHEMA_VERSION}); upgrade forecast-console")
    changed = False
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is not None:
            data = step(data)
        version += 1
        changed = True
    meta = data.setdefault(META_TABLE, {}).setdefault("1", {})
    if meta.get("schema_version") != SCHEMA_VERSION:
        meta["schema_version"] = SCHEMA_VERSION
        meta.setdefault("created_at", time.time())
        changed = True
    return data, changed


class AtomicJSONStorage(Storage):
    """TinyDB storage: in-memory authoritative copy (writer) written through atomically.

    `readonly=True` makes a reader: writes raise StoreError, and the file is re-parsed only when it
    changed on disk (one `stat` per read).
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False, fsync: bool = True,
                 append_only: frozenset[str] = frozenset()) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.fsync = fsync
        #: Tables whose documents are never modified after insert (the Store guarantees it): each
        #: document is serialised once and its JSON reused, so rewriting a 10k-run file costs a join,
        #: not a full re-encode.
        self.append_only = append_only
        self._frag: dict[str, dict[str, tuple[Any, str]]] = {}
        self.writes = 0  # bumped on each successful write; the Store uses it to invalidate indexes
        self._sig: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}
        self._last: bytes = b""
        self._load(initial=True)

    # --- loading -----------------------------------------------------------------------------
    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, initial: bool = False) -> None:
        sig = self._signature()
        loaded, raw = load_file(self.path)
        data, changed = migrate(loaded if loaded is not None else {}, self.path)
        self._data = data
        self._last = raw
        self._sig = sig
        if not self.readonly and (changed or sig is None):
            # New store, or a migration: write it out once so the file always carries its version.
            self.write(self._data)
        elif not initial:
            self.writes += 1

    # --- Storage API -------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        if self.readonly:
            sig = self._signature()
            if sig != self._sig:
                self._load()
            elif sig is not None and time.time() - sig[1] / 1e9 < _RACY_S:
                # "Racy" signature (as in git): a replace within the same timestamp tick can reuse
                # the freed inode number with an equal size, so compare the bytes (no parse unless changed).
                try:
                    raw = self.path.read_bytes()
                except FileNotFoundError:
                    raw = b""
                if raw != self._last:
                    self._load()
        return self._data

    def write(self, data: dict[str, Any]) -> None:
        if self.readonly:
            raise StoreError(f"store {self.path} is open read-only; nothing was written")
        try:
            raw = self._serialise(data)
        except (TypeError, ValueError) as exc:
            # TinyDB mutated our copy before calling write: put the last written state back.
            self._data = json.loads(self._last) if self._last else {}
            raise StoreError(f"record is not JSON-serialisable ({exc}); nothing was written") from None
        try:
            atomic_write_bytes(self.path, raw, fsync=self.fsync)
        except OSError:
            self._data = json.loads(self._last) if self._last else {}
            raise
        self._data = data
        self._last = raw
        self._sig = self._signature()
        self.writes += 1

    def _serialise(self, data: dict[str, Any]) -> bytes:
        """Same bytes as `dumps(data)`, reusing cached JSON for documents of append-only tables."""
        parts: list[str] = []
        for name, table in data.items():
            if name not in self.append_only:
                parts.append(f"{_enc(name)}:{_enc(table)}")
                continue
            old = self._frag.get(name, {})
            new: dict[str, tuple[Any, str]] = {}
            docs = []
            for doc_id, doc in table.items():
                hit = old.get(doc_id)
                if hit is None or hit[0] is not doc:
                    hit = (doc, f"{_enc(doc_id)}:{_enc(doc)}")
                new[doc_id] = hit
                docs.append(hit[1])
            self._frag[name] = new
            parts.append(f"{_enc(name)}:{{{','.join(docs)}}}")
        return f"{{{','.join(parts)}}}".encode()

    def close(self) -> None:
        pass
