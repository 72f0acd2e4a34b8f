"""`Store`: one workspace's data. Jobs, runs and job bookkeeping live in the SQLite ledger
(`store/ledger.py`); the decision tables of store/decisions.py (baselines, picks, comparisons,
regressions) and the promotion audit of store/promotion.py stay in TinyDB (`store.json`): small and
human-readable.

Why a class around both: the store owns the single-writer lock, the crash-safe storage, input
validation (every bad input is refused before anything is written) and the migration of an older
`store.json` that still holds jobs and runs. Only the engine process writes; tasks and second
consoles open it read-only.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from tinydb import TinyDB

from engine.models import ModelNameError, validate_model
from engine.symbols import SymbolError, validate_symbol
from store.atomic import atomic_write_bytes
from store.decisions import DecisionsMixin
from store.ledger import LEDGER_FILE, Ledger
from store.plain_json import clean_json
from store.promotion import PromotionMixin
from store.run_reports import RunReportsMixin
from store.storage import (
    LEDGER_TABLES,
    AtomicJSONStorage,
    StoreError,
    StoreLocked,
    WorkspaceLock,
    remove_stale_temps,
)
from store.tracker import TrackerMixin, run_window_keys
from store.workspace import Workspace, check_id

#: Tables in store.json (TinyDB); jobs, runs and envs are in the ledger.
TABLES: tuple[str, ...] = ("baselines", "best", "promotions", "comparisons", "regressions")
#: Tables the Store only ever appends to (never updates a document in place): cached serialisation.
APPEND_ONLY: frozenset[str] = frozenset({"promotions"})
ENV_HYPERPARAMS = "FORECAST_HYPERPARAMS"  # same variable as engine.paths (store depends on nothing of ours)


def default_hyperparams_dir() -> Path:
    """$FORECAST_HYPERPARAMS, else ./hyperparams (mirrors engine.paths.hyperparams_dir)."""
    return Path(os.environ.get(ENV_HYPERPARAMS) or "hyperparams").expanduser().resolve()


class Store(TrackerMixin, RunReportsMixin, DecisionsMixin, PromotionMixin):
    """One workspace's store. Use `Store.open(path)`; close() (or `with`) releases the write lock."""

    def __init__(self, workspace: Workspace, storage: AtomicJSONStorage, lock: WorkspaceLock | None,
                 *, readonly: bool, hyperparams_dir: Path, readonly_reason: str | None = None,
                 ledger: Ledger | None = None) -> None:
        self.workspace = workspace
        self.readonly = readonly
        self.readonly_reason = readonly_reason
        self.hyperparams_dir = hyperparams_dir
        self._storage = storage
        self._lock_file = lock
        self._db = TinyDB(storage=lambda: storage)
        self._lock = threading.RLock()
        self._ledger_obj = ledger
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
        progress: Callable[[str], None] | None = None,
    ) -> Store:
        """Open for writing (takes the workspace lock; StoreLocked if another process has it) or
        `readonly=True` (no lock, no writes, sees the writer's latest committed data). With
        `fallback_readonly=True` a locked workspace opens read-only instead, and `readonly_reason` says why.
        `progress` hears, line by line, how far a writer's one-off upgrade of an older ledger is (up to a
        minute for a big one: store.ledger_file.migrate).
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
            original = ws.store_file.read_bytes() if ws.store_file.exists() else b""
            storage = AtomicJSONStorage(ws.store_file, readonly=False, fsync=fsync, append_only=APPEND_ONLY)
            ledger = Ledger.open(ws.root / LEDGER_FILE, fsync=fsync, progress=progress)
        except BaseException:
            lock.release()
            raise
        store = cls(ws, storage, lock, readonly=False, hyperparams_dir=hp, ledger=ledger)
        try:
            store._migrate_legacy_tables(original)
            store.settle_promotions()  # a promotion a crash interrupted: audit follows what the file holds
        except BaseException:
            store.close()
            raise
        return store

    def _migrate_legacy_tables(self, original: bytes) -> None:
        """Move jobs, runs and envs of an older store.json into the ledger (writer, once).

        Order: the file as it was before this open is kept as `store.json.pre-ledger`; the ledger imports the
        tables in one transaction that records the import; only then are they dropped from
        store.json. A crash anywhere in between repeats only what had not finished.
        """
        data = self._storage.read()
        legacy = {t: data[t] for t in LEDGER_TABLES if t in data}
        if not legacy:
            return
        backup = self.workspace.store_file.with_name(self.workspace.store_file.name + ".pre-ledger")
        if not backup.exists():
            atomic_write_bytes(backup, original, fsync=self._storage.fsync)
        self._ledger.import_legacy(legacy, run_window_keys)
        for t in legacy:
            self._db.drop_table(t)

    @property
    def _ledger(self) -> Ledger:
        """The ledger; a reader opens it on first use (a workspace whose store.json still holds
        jobs and runs because no writer has opened it since an upgrade is read from store.json)."""
        led = self._ledger_obj
        if led is not None and (led.path is not None or not (self.workspace.root / LEDGER_FILE).exists()):
            return led
        with self._lock:
            if led is not None:
                led.close()
            path = self.workspace.root / LEDGER_FILE
            legacy = {t: v for t, v in self._storage.read().items() if t in LEDGER_TABLES}
            if path.exists():
                led = Ledger.open(path, readonly=True)
                if legacy and not led.meta("imported_store_json"):
                    led.close()
                    led = None
            else:
                led = None
            if led is None:
                led = Ledger.in_memory()
                if legacy:
                    led.import_legacy(legacy, run_window_keys)
            self._ledger_obj = led
            return led

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group job/run writes (and the engine's bookkeeping) into one ledger commit."""
        with self._lock:
            self._require_writable("write")
            with self._ledger.transaction():
                yield self

    def close(self) -> None:
        """Release the write lock (idempotent). Everything is already on disk: every write is synced."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
            if self._ledger_obj is not None:
                self._ledger_obj.close()
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

    # --- jobs (ledger) ------------------------------------------------------------------------
    def _clean_job(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(rec, Mapping) or "id" not in rec:
            raise StoreError("a job record must be a dict with an 'id'")
        check_id("job", rec["id"])
        return clean_json(dict(rec), f"job {rec['id']}")

    def put_job(self, rec: Mapping[str, Any]) -> None:
        """Insert or replace a job record (keyed by `id`)."""
        self.put_jobs([rec])

    def put_jobs(self, recs: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace several job records in one transaction (all or none)."""
        with self._lock:
            self._require_writable("record a job")
            clean = [self._clean_job(r) for r in recs]
            self._ledger.put_jobs(clean)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._ledger.get_job(job_id)

    def jobs(self, state: str | Iterable[str] | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Job records in insertion order, optionally only those in `state` (a name or several),
        and only the newest `limit`."""
        with self._lock:
            states = [state] if isinstance(state, str) else (list(state) if state is not None else None)
            return self._ledger.jobs(states, limit=limit)

    def job_summaries(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """job id -> {kind, state, started_at, finished_at} for the given jobs that are recorded."""
        with self._lock:
            return self._ledger.job_summaries(job_ids)

    def delete_jobs(self, job_ids: Iterable[str]) -> int:
        """Forget job records (gc); their folders are the caller's to remove."""
        with self._lock:
            self._require_writable("delete jobs")
            return self._ledger.delete_jobs(job_ids)

    # --- job bookkeeping (exactly-once lifecycle; see store/ledger.py) -------------------------
    def record_intake(self, job_id: str, outcome: str) -> None:
        with self._lock:
            self._require_writable("record an intake")
            self._ledger.record_intake(job_id, outcome)

    def intake_outcome(self, job_id: str) -> str | None:
        with self._lock:
            return self._ledger.intake_outcome(job_id)

    def record_result(self, job_id: str, events_offset: int) -> bool:
        with self._lock:
            self._require_writable("record a result")
            return self._ledger.record_result(job_id, events_offset)

    def result_offset(self, job_id: str) -> int | None:
        with self._lock:
            return self._ledger.result_offset(job_id)

    # --- misc ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table (for status lines and tests)."""
        with self._lock:
            return {**{t: len(self._table(t)) for t in TABLES}, **self._ledger.counts()}


__all__ = ["Store", "StoreError", "StoreLocked", "Workspace", "TABLES"]
