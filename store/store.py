"""`Store`: the workspace's TinyDB database (jobs, runs, and the decision tables of store/decisions.py:
baselines, picks, comparisons, regressions; the promotion audit of store/promotion.py).

Why a class around TinyDB rather than TinyDB itself: the store owns the single-writer lock, the
crash-safe storage, input validation (every bad input is refused before anything is written) and
the in-memory indexes that keep `best()` fast. Only the engine process writes; tasks and second
consoles open it read-only.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from tinydb import TinyDB

from engine.models import ModelNameError, validate_model
from engine.symbols import SymbolError, validate_symbol
from store.decisions import DecisionsMixin
from store.promotion import PromotionMixin
from store.storage import AtomicJSONStorage, StoreError, StoreLocked, WorkspaceLock, remove_stale_temps
from store.tracker import TrackerMixin, clean_json, fast_copy
from store.workspace import Workspace, check_id

TABLES: tuple[str, ...] = ("jobs", "runs", "baselines", "best", "promotions", "comparisons", "regressions", "envs")
#: Tables the Store only ever appends to (never updates a document in place): cached serialisation.
APPEND_ONLY: frozenset[str] = frozenset({"runs", "promotions", "envs"})
ENV_HYPERPARAMS = "FORECAST_HYPERPARAMS"  # same variable as engine.paths (store depends on nothing of ours)


def default_hyperparams_dir() -> Path:
    """$FORECAST_HYPERPARAMS, else ./hyperparams (mirrors engine.paths.hyperparams_dir)."""
    return Path(os.environ.get(ENV_HYPERPARAMS) or "hyperparams").expanduser().resolve()


class Store(TrackerMixin, DecisionsMixin, PromotionMixin):
    """One workspace's store. Use `Store.open(path)`; close() (or `with`) releases the write lock."""

    def __init__(self, workspace: Workspace, storage: AtomicJSONStorage, lock: WorkspaceLock | None,
                 *, readonly: bool, hyperparams_dir: Path, readonly_reason: str | None = None) -> None:
        self.workspace = workspace
        self.readonly = readonly
        self.readonly_reason = readonly_reason
        self.hyperparams_dir = hyperparams_dir
        self._storage = storage
        self._lock_file = lock
        self._db = TinyDB(storage=lambda: storage)
        self._lock = threading.RLock()
        self._memo: dict[Any, Any] = {}  # indexes over the runs table (see TrackerMixin)
        self._rmemo_src: Any = None
        self._env_src: Any = None
        self._env_idx: dict[str, dict[str, Any]] = {}
        self._closed = False

    # ------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        workspace: str | os.PathLike[str] | Workspace,
        *,
        readonly: bool = False,
        hyperparams_dir: str | os.PathLike[str] | None = None,
        fallback_readonly: bool = False,
        fsync: bool = True,
    ) -> Store:
        """Open for writing (takes the workspace lock; StoreLocked if another process has it) or
        `readonly=True` (no lock, no writes, sees the writer's latest whole file). With
        `fallback_readonly=True` a locked workspace opens read-only instead, and `readonly_reason` says why.
        """
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        hp = Path(hyperparams_dir).expanduser().resolve() if hyperparams_dir else default_hyperparams_dir()
        if readonly:
            if ws.root.exists() and not ws.root.is_dir():
                raise StoreError(f"workspace {ws.root} exists and is not a folder")
            storage = AtomicJSONStorage(ws.store_file, readonly=True)
            return cls(ws, storage, None, readonly=True, hyperparams_dir=hp, readonly_reason="opened read-only")
        ws.ensure()
        lock = WorkspaceLock(ws.lock_file)
        try:
            lock.acquire()
        except StoreLocked as exc:
            if not fallback_readonly:
                raise
            storage = AtomicJSONStorage(ws.store_file, readonly=True)
            return cls(ws, storage, None, readonly=True, hyperparams_dir=hp, readonly_reason=str(exc))
        try:
            remove_stale_temps(ws.store_file)  # we hold the lock: any temp file is a dead writer's
            storage = AtomicJSONStorage(ws.store_file, readonly=False, fsync=fsync, append_only=APPEND_ONLY)
        except BaseException:
            lock.release()
            raise
        st = cls(ws, storage, lock, readonly=False, hyperparams_dir=hp)
        try:
            st.settle_promotions()  # a promotion a crash interrupted: audit follows what the file holds
        except BaseException:
            st.close()
            raise
        return st

    def close(self) -> None:
        """Release the write lock (idempotent). The file is already on disk: every write is synced."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            if self._lock_file is not None:
                self._lock_file.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writer"
        return f"<Store {self.workspace.root} {mode}>"

    @property
    def schema_version(self) -> int:
        return int(self._storage.read().get("_meta", {}).get("1", {}).get("schema_version", 0))

    # --- shared helpers (used by the mixins) --------------------------------------------------
    def _require_writable(self, what: str) -> None:
        if self._closed:
            raise StoreError(f"cannot {what}: the store is closed")
        if self.readonly:
            raise StoreError(f"cannot {what}: the store at {self.workspace.root} is open read-only "
                             f"({self.readonly_reason or 'read-only'})")

    def _check_model(self, model: str) -> str:
        try:
            return validate_model(model)
        except ModelNameError as exc:
            raise StoreError(str(exc)) from None

    def _check_symbol(self, symbol: str) -> str:
        try:
            return validate_symbol(symbol)
        except SymbolError as exc:
            raise StoreError(str(exc)) from None

    def _table(self, name: str) -> dict[str, dict[str, Any]]:
        """The raw stored table (doc id → record); never hand these dicts out without copying."""
        return self._storage.read().get(name, {})

    def _insert(self, name: str, doc: dict[str, Any]) -> int:
        return self._db.table(name).insert(doc)

    def _upsert(self, name: str, key: Callable[[Mapping[str, Any]], Any], rows: list[dict[str, Any]]) -> None:
        """Replace rows whose key exists, insert the others (at most two atomic writes).

        Linear in the table size: existing rows are found by key through one index, and replaced
        in one `update` over their doc ids (TinyDB's `update_multiple` tests every condition
        against every document, which made re-recording 480 symbols' baselines quadratic).
        """
        doc_of = {key(d): int(doc_id) for doc_id, d in self._table(name).items()}
        latest: dict[Any, dict[str, Any]] = {}
        for r in rows:  # last one wins within a batch
            latest[key(r)] = r
        update_ids = [doc_of[k] for k in latest if k in doc_of]
        inserts = [r for k, r in latest.items() if k not in doc_of]
        table = self._db.table(name)
        if update_ids:
            def replace(doc: MutableMapping[Any, Any]) -> None:
                new = latest[key(doc)]
                doc.clear()
                doc.update(new)

            table.update(replace, doc_ids=update_ids)
        if inserts:
            table.insert_multiple(inserts)

    # --- jobs ---------------------------------------------------------------------------------
    def put_job(self, rec: Mapping[str, Any]) -> None:
        """Insert or replace a job record (keyed by `id`)."""
        with self._lock:
            self._require_writable("record a job")
            if not isinstance(rec, Mapping) or "id" not in rec:
                raise StoreError("a job record must be a dict with an 'id'")
            check_id("job", rec["id"])
            clean = clean_json(dict(rec), f"job {rec['id']}")
            self._upsert("jobs", lambda d: d["id"], [clean])

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            for d in self._table("jobs").values():
                if d["id"] == job_id:
                    return fast_copy(d)
            return None

    def jobs(self, state: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Job records in insertion order, optionally only those in `state` (a name or several)."""
        with self._lock:
            states = {state} if isinstance(state, str) else (set(state) if state is not None else None)
            return [fast_copy(d) for d in self._table("jobs").values()
                    if states is None or d.get("state") in states]

    # --- misc ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table (for status lines and tests)."""
        with self._lock:
            return {t: len(self._table(t)) for t in TABLES}


__all__ = ["Store", "StoreError", "StoreLocked", "Workspace", "TABLES"]
