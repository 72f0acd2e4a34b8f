"""`Store`: the workspace's TinyDB database (jobs, runs, baselines, picks, comparisons, regressions,
promotions).

Why a class around TinyDB rather than TinyDB itself: the store owns the single-writer lock, the
crash-safe storage, input validation (every bad input is refused before anything is written) and
the in-memory indexes that keep `best()` fast. Only the engine process writes; tasks and second
consoles open it read-only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB

from engine.models import ModelNameError, validate_model
from engine.symbols import SymbolError, validate_symbol
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


def _baseline_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r["symbol"], r["model"], r["horizon"], r["span"])


def _comparison_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r["symbol"], r["horizon"], r["model"])


def _regression_key(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r["model"], r["symbol"], r["metric"])


class Store(TrackerMixin, PromotionMixin):
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
        return cls(ws, storage, lock, readonly=False, hyperparams_dir=hp)

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
            def replace(doc: dict[str, Any]) -> None:
                new = latest[key(doc)]
                doc.clear()
                doc.update(new)

            table.update(replace, doc_ids=update_ids)
        if inserts:
            table.insert_multiple(inserts)

    @staticmethod
    def _stamp(rec: dict[str, Any], field: str = "updated") -> dict[str, Any]:
        now = time.time()
        rec[f"{field}_at"] = now
        rec[f"{field}_iso"] = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        return rec

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

    # --- baselines ----------------------------------------------------------------------------
    def _check_rows(self, rows: Iterable[Mapping[str, Any]], what: str, need: tuple[str, ...]) -> list[dict[str, Any]]:
        if isinstance(rows, Mapping) or not isinstance(rows, Iterable):
            raise StoreError(f"{what} must be a list of dicts")
        out = []
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise StoreError(f"{what}[{i}] must be a dict")
            missing = [k for k in need if k not in r]
            if missing:
                raise StoreError(f"{what}[{i}] is missing {', '.join(missing)}")
            c = clean_json(dict(r), f"{what}[{i}]")
            c["symbol"] = self._check_symbol(c["symbol"])
            if not isinstance(c["model"], str) or not c["model"].strip():
                raise StoreError(f"{what}[{i}].model must be a non-empty name")
            h = c["horizon"]
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise StoreError(f"{what}[{i}].horizon must be a positive integer, got {h!r}")
            out.append(self._stamp(c))
        return out

    def put_baselines(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Upsert baseline rows keyed by (symbol, model, horizon, span)."""
        with self._lock:
            self._require_writable("record baselines")
            clean = self._check_rows(rows, "baselines", ("symbol", "model", "horizon", "span"))
            if clean:
                self._upsert("baselines", _baseline_key, clean)

    def baselines(self, symbol: str | None = None, horizon: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            return [fast_copy(d) for d in self._table("baselines").values()
                    if (sym is None or d["symbol"] == sym) and (horizon is None or d["horizon"] == horizon)]

    # --- comparisons --------------------------------------------------------------------------
    def put_comparisons(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Upsert comparison-table rows keyed by (symbol, horizon, model)."""
        with self._lock:
            self._require_writable("record comparisons")
            clean = self._check_rows(rows, "comparisons", ("symbol", "horizon", "model"))
            if clean:
                self._upsert("comparisons", _comparison_key, clean)

    def comparisons(self, symbol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            return [fast_copy(d) for d in self._table("comparisons").values() if sym is None or d["symbol"] == sym]

    # --- regressions -------------------------------------------------------------------------
    def put_regressions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Upsert regression-check rows (engine.tasks.regression's format) keyed by (model, symbol, metric).

        Why keyed without the job: the Regressions screen shows the latest verdict per pick; an
        older check of the same (model, symbol, metric) is replaced, not accumulated.
        """
        with self._lock:
            self._require_writable("record regressions")
            if isinstance(rows, Mapping) or not isinstance(rows, Iterable):
                raise StoreError("regressions must be a list of dicts")
            clean: list[dict[str, Any]] = []
            for i, r in enumerate(rows):
                if not isinstance(r, Mapping):
                    raise StoreError(f"regressions[{i}] must be a dict")
                missing = [k for k in ("model", "symbol", "metric") if k not in r]
                if missing:
                    raise StoreError(f"regressions[{i}] is missing {', '.join(missing)}")
                c = clean_json(dict(r), f"regressions[{i}]")
                c["symbol"] = self._check_symbol(c["symbol"])
                c["model"] = self._check_model(c["model"])
                if not isinstance(c["metric"], str) or not c["metric"].strip():
                    raise StoreError(f"regressions[{i}].metric must be a non-empty name")
                jobs = c.get("proposed_jobs", [])
                if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
                    raise StoreError(f"regressions[{i}].proposed_jobs must be a list of job spec dicts")
                clean.append(self._stamp(c))
            if clean:
                self._upsert("regressions", _regression_key, clean)

    def regressions(self, model: str | None = None, symbol: str | None = None) -> list[dict[str, Any]]:
        """Latest regression rows (one per model, symbol, metric), optionally filtered."""
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            return [fast_copy(d) for d in self._table("regressions").values()
                    if (sym is None or d["symbol"] == sym) and (model is None or d["model"] == model)]

    # --- picks (table "best") -----------------------------------------------------------------
    def _pick_doc(self, model: str, symbol: str) -> dict[str, Any] | None:
        for d in self._table("best").values():
            if d["model"] == model and d["symbol"] == symbol:
                return d
        return None

    def set_pick(self, model: str, symbol: str, pick: Mapping[str, Any]) -> None:
        """Make `pick` the current choice for (model, symbol); the one it replaces becomes `previous`
        (kept so a regression check can compare old and new)."""
        with self._lock:
            self._require_writable("set a pick")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            if not isinstance(pick, Mapping):
                raise StoreError("a pick must be a dict with at least 'config'")
            if not isinstance(pick.get("config"), Mapping):
                raise StoreError(f"pick for {model}/{symbol} needs a 'config' dict (the chosen parameters)")
            src = pick.get("source_run")
            if src is not None and src not in self._run_index():
                raise StoreError(f"pick for {model}/{symbol} names source run {src!r}, which does not exist")
            cur = clean_json(dict(pick), f"pick {model}/{symbol}")
            cur.update(model=model, symbol=symbol)
            cur.setdefault("selection_metric", "val_mae_pct")
            self._stamp(cur, "set")
            doc = self._pick_doc(model, symbol)
            new = {"model": model, "symbol": symbol, "current": cur,
                   "previous": doc["current"] if doc else None}
            self._upsert("best", lambda d: (d["model"], d["symbol"]), [new])

    def pick(self, model: str, symbol: str) -> dict[str, Any] | None:
        with self._lock:
            d = self._pick_doc(self._check_model(model), self._check_symbol(symbol))
            return fast_copy(d["current"]) if d else None

    def previous_pick(self, model: str, symbol: str) -> dict[str, Any] | None:
        with self._lock:
            d = self._pick_doc(self._check_model(model), self._check_symbol(symbol))
            return fast_copy(d["previous"]) if d and d.get("previous") else None

    def picks(self) -> list[dict[str, Any]]:
        """Current picks, sorted by (model, symbol)."""
        with self._lock:
            out = [fast_copy(d["current"]) for d in self._table("best").values()]
            return sorted(out, key=lambda p: (p["model"], p["symbol"]))

    # --- misc ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Rows per table (for status lines and tests)."""
        with self._lock:
            return {t: len(self._table(t)) for t in TABLES}


__all__ = ["Store", "StoreError", "StoreLocked", "Workspace", "TABLES"]
