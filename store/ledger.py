"""The ledger: jobs, runs and job bookkeeping in SQLite (stdlib `sqlite3`, WAL).

Why SQLite and not TinyDB for these: TinyDB rewrites and fsyncs its whole file on every write, so a
write costs more the more runs and jobs there are, and nothing spanning two writes is atomic. Here a
write is a B-tree update plus one WAL append, whatever the size, and `transaction()` groups every
write the engine makes in one tick (a job's result runs, its event offset, the inbox marker it
consumed) into one commit: after a crash either all of it is there or none of it is.

Schema-agnostic about the documents: a job or run is stored whole as JSON (`doc`), next to the
columns queries filter and sort on (ids, state, model, symbol, times, one row per numeric metric),
so the typed records of `store.records` fit without a schema change here.

Bookkeeping tables make each lifecycle step exactly-once across crashes:
`intake` (spool markers taken), `results` (job results recorded, with the event offset they end at).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from store.storage import StoreError

LEDGER_FILE = "ledger.db"
SCHEMA_VERSION = 1
FINISHED_STATES = ("succeeded", "failed", "cancelled", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT, parent TEXT, created_at REAL, updated_at REAL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
    symbol TEXT NOT NULL, job_id TEXT, created_at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_model_symbol ON runs(model, symbol);
CREATE INDEX IF NOT EXISTS runs_symbol ON runs(symbol);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job_id);
CREATE TABLE IF NOT EXISTS metrics (
    seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE, name TEXT NOT NULL, value REAL NOT NULL,
    model TEXT NOT NULL, symbol TEXT NOT NULL, created_at REAL NOT NULL, windows TEXT);
CREATE INDEX IF NOT EXISTS metrics_all ON metrics(name, value, created_at);
CREATE INDEX IF NOT EXISTS metrics_model ON metrics(name, model, value, created_at);
CREATE INDEX IF NOT EXISTS metrics_model_symbol ON metrics(name, model, symbol, value, created_at);
CREATE INDEX IF NOT EXISTS metrics_symbol ON metrics(name, symbol, value, created_at);
CREATE INDEX IF NOT EXISTS metrics_seq ON metrics(seq);
CREATE INDEX IF NOT EXISTS metrics_windows ON metrics(name, symbol, windows) WHERE windows IS NOT NULL;
CREATE INDEX IF NOT EXISTS metrics_windows_model ON metrics(name, model, symbol, windows) WHERE windows IS NOT NULL;
CREATE TABLE IF NOT EXISTS envs (key TEXT PRIMARY KEY, versions TEXT NOT NULL, first_seen REAL);
CREATE TABLE IF NOT EXISTS intake (job_id TEXT PRIMARY KEY, at REAL NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, events_offset INTEGER NOT NULL, at REAL NOT NULL);
"""

_enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _dumps(doc: Any, what: str) -> str:
    try:
        return _enc(doc)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable ({exc}); nothing was written") from None


class Ledger:
    """One workspace's ledger file. The Store opens it (writer or read-only) and delegates to it."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None, *, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        self._depth = 0

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, fsync: bool = True) -> Ledger:
        """Writer: creates the file and schema. Reader: `mode=ro`, sees every committed transaction."""
        path = Path(path)
        try:
            if readonly:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0,
                                       isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
                conn.executescript(_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("PRAGMA foreign_keys=ON")
            led = cls(conn, path, readonly=readonly)
            version = int(led.meta("schema_version") or 0)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"ledger {path} cannot be opened ({exc}); it was left unchanged: restore it "
                             "from a backup or move it away to start a new one") from None
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"ledger {path} has schema version {version}, newer than this program "
                             f"understands ({SCHEMA_VERSION}); upgrade forecast-console")
        return led

    @classmethod
    def in_memory(cls) -> Ledger:
        """A private ledger (a reader of a workspace whose store.json was not migrated yet)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.executescript(_SCHEMA)
        return cls(conn, None, readonly=False)

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._conn.close()

    # ---- transactions --------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """All writes inside commit together (nested calls join the outer one)."""
        with self._lock:
            if self._depth == 0:
                self._require_writable()
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("COMMIT")

    def _require_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"ledger {self.path} is open read-only; nothing was written")

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def meta(self, key: str) -> str | None:
        row = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0][0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ---- jobs ----------------------------------------------------------------------------
    def put_jobs(self, recs: Iterable[Mapping[str, Any]]) -> None:
        """Insert or replace job records (keyed by `id`; a replaced job keeps its place in order)."""
        rows = [(r["id"], r.get("state"), r.get("parent"), r.get("created_at"), time.time(),
                 _dumps(r, f"job {r['id']}")) for r in recs]
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO jobs (id, state, parent, created_at, updated_at, doc) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state=excluded.state, parent=excluded.parent, "
                "created_at=excluded.created_at, updated_at=excluded.updated_at, doc=excluded.doc", rows)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self._rows("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        return json.loads(row[0][0]) if row else None

    def jobs(self, states: Iterable[str] | None = None, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Job records in insertion order (the newest `limit` of them, when given)."""
        where, args = "", list[Any]()
        if states is not None:
            st: list[Any] = list(states)
            where = f" WHERE state IN ({','.join('?' * len(st))})"
            args = st
        if limit is not None:
            sql = f"SELECT doc FROM (SELECT rowid, doc FROM jobs{where} ORDER BY rowid DESC LIMIT ?) ORDER BY rowid"
            args = [*args, int(limit)]
        else:
            sql = f"SELECT doc FROM jobs{where} ORDER BY rowid"
        return [json.loads(d) for (d,) in self._rows(sql, args)]

    def job_summaries(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """{kind, state, started_at, finished_at} of each given job the ledger holds (the run
        browser's columns, read without decoding whole job documents)."""
        ids = list(dict.fromkeys(job_ids))
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            sql = ("SELECT id, json_extract(doc, '$.kind'), state, json_extract(doc, '$.started_at'), "
                   f"json_extract(doc, '$.finished_at') FROM jobs WHERE id IN ({','.join('?' * len(chunk))})")
            for jid, kind, state, t0, t1 in self._rows(sql, chunk):
                out[jid] = {"kind": kind, "state": state, "started_at": t0, "finished_at": t1}
        return out

    def job_counts(self) -> dict[str, int]:
        return {s: n for s, n in self._rows("SELECT state, COUNT(*) FROM jobs GROUP BY state")}

    def delete_jobs(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        with self.transaction():
            for jid in ids:
                self._conn.execute("DELETE FROM jobs WHERE id = ?", (jid,))
                self._conn.execute("DELETE FROM intake WHERE job_id = ?", (jid,))
                self._conn.execute("DELETE FROM results WHERE job_id = ?", (jid,))
        return len(ids)

    # ---- bookkeeping (exactly-once) -------------------------------------------------------
    def record_intake(self, job_id: str, outcome: str) -> None:
        """A spool marker was taken (`outcome` "queued", "rejected: ...", "cancel"); commit it with the job."""
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO intake VALUES (?, ?, ?)", (job_id, time.time(), outcome))

    def intake_outcome(self, job_id: str) -> str | None:
        row = self._rows("SELECT outcome FROM intake WHERE job_id = ?", (job_id,))
        return row[0][0] if row else None

    def record_result(self, job_id: str, events_offset: int) -> bool:
        """Mark a job's result as written (False when it already was: the caller writes nothing)."""
        with self.transaction():
            cur = self._conn.execute("INSERT OR IGNORE INTO results VALUES (?, ?, ?)",
                                     (job_id, int(events_offset), time.time()))
            return cur.rowcount == 1

    def result_offset(self, job_id: str) -> int | None:
        row = self._rows("SELECT events_offset FROM results WHERE job_id = ?", (job_id,))
        return int(row[0][0]) if row else None

    # ---- runs ----------------------------------------------------------------------------
    def add_run(self, rec: Mapping[str, Any], windows: Mapping[str, str | None] | None = None) -> None:
        """Insert a run; `windows` maps a metric-name prefix ("val", "test") to the key of the windows
        those metrics were computed on (indexed beside each metric, see `mixed_windows`)."""
        doc = _dumps(rec, f"run {rec['run_id']}")
        win = dict(windows or {})
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO runs (run_id, model, symbol, job_id, created_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
                (rec["run_id"], rec["model"], rec["symbol"], rec.get("job_id"), rec["created_at"], doc))
            seq = cur.lastrowid
            mets = [(seq, k, float(v), rec["model"], rec["symbol"], rec["created_at"], win.get(k.split("_", 1)[0]))
                    for k, v in (rec.get("metrics") or {}).items()
                    if isinstance(v, int | float) and math.isfinite(v)]
            self._conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", mets)

    def mixed_windows(self, metric: str, model: str | None = None, symbol: str | None = None
                      ) -> tuple[str, str, str, str, str] | None:
        """(symbol, key a, run a, key b, run b) when `metric` of one symbol was computed on
        different windows among the selected runs, else None.

        Index seeks only, whatever the number of runs (every best()/top_k() pays this check): the
        symbols are walked one by one (`MIN(symbol) > previous`, a recursive CTE) and each symbol's
        lowest and highest window key is read from the ends of its range in the partial index
        metrics_windows (metrics_windows_model with a model), so the cost grows with the number of
        symbols, not of runs."""
        base = "name = :name AND windows IS NOT NULL" + ("" if model is None else " AND model = :model")
        first = ("SELECT :symbol" if symbol is not None else f"SELECT (SELECT MIN(symbol) FROM metrics WHERE {base})")
        step = ("" if symbol is not None else
                f" UNION ALL SELECT (SELECT MIN(symbol) FROM metrics WHERE {base} AND symbol > s.sym) "
                "FROM s WHERE s.sym IS NOT NULL")
        # A lone MIN() or MAX() is one index seek; both in one SELECT would scan the symbol's range.
        sql = (f"WITH RECURSIVE s(sym) AS ({first}{step}) "
               f"SELECT sym, lo, hi FROM (SELECT sym, "
               f"(SELECT MIN(windows) FROM metrics WHERE {base} AND symbol = s.sym) AS lo, "
               f"(SELECT MAX(windows) FROM metrics WHERE {base} AND symbol = s.sym) AS hi "
               "FROM s WHERE sym IS NOT NULL) WHERE lo <> hi LIMIT 1")
        with self._lock:
            row = self._conn.execute(sql, {"name": metric, "model": model, "symbol": symbol}).fetchone()
        if row is None:
            return None
        sym, a, b = row

        def example(key: str) -> str:
            r = self._rows("SELECT r.run_id FROM metrics m JOIN runs r ON r.seq = m.seq "
                           "WHERE m.name = ? AND m.symbol = ? AND m.windows = ? ORDER BY m.seq LIMIT 1",
                           (metric, sym, key))
            return r[0][0] if r else "?"

        return sym, a, example(a), b, example(b)

    def has_run(self, run_id: str) -> bool:
        return bool(self._rows("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = self._rows("SELECT doc FROM runs WHERE run_id = ?", (run_id,))
        return json.loads(row[0][0]) if row else None

    def runs(self, model: str | None = None, symbol: str | None = None, *, since: float | None = None,
             job_id: str | None = None, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Run records, oldest first, filtered on the indexed columns."""
        conds: list[str] = []
        args: list[Any] = []
        for col, val in (("model", model), ("symbol", symbol), ("job_id", job_id)):
            if val is not None:
                conds.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            conds.append("created_at >= ?")
            args.append(since)
        if run_ids is not None:
            ids = list(run_ids)
            conds.append(f"run_id IN ({','.join('?' * len(ids))})")
            args += ids
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        return [json.loads(d) for (d,) in self._rows(f"SELECT doc FROM runs{where} ORDER BY seq", args)]

    def ranked(self, metric: str, model: str | None = None, symbol: str | None = None, *,
               minimize: bool = True, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Runs with a finite `metric`, best first (ties: older first), read lazily."""
        conds, args = ["m.name = ?"], [metric]
        if model is not None:
            conds.append("m.model = ?")
            args.append(model)
        if symbol is not None:
            conds.append("m.symbol = ?")
            args.append(symbol)
        order = "m.value ASC" if minimize else "m.value DESC"
        sql = (f"SELECT r.doc FROM metrics m JOIN runs r ON r.seq = m.seq WHERE {' AND '.join(conds)} "
               f"ORDER BY {order}, m.created_at ASC, m.seq ASC")
        offset = 0
        while limit is None or offset < limit:  # pages: no cursor stays open across other calls
            page = 256 if limit is None else min(256, limit - offset)
            rows = self._rows(f"{sql} LIMIT {page} OFFSET {offset}", args)
            for (d,) in rows:
                yield json.loads(d)
            offset += len(rows)
            if len(rows) < page:
                return

    def run_groups(self) -> list[tuple[str, str, int]]:
        """(model, symbol, number of runs), sorted."""
        return [(m, s, int(n)) for m, s, n in
                self._rows("SELECT model, symbol, COUNT(*) FROM runs GROUP BY model, symbol ORDER BY model, symbol")]

    def run_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM runs")[0][0])

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        n = 0
        with self.transaction():
            for rid in run_ids:
                n += self._conn.execute("DELETE FROM runs WHERE run_id = ?", (rid,)).rowcount
        return n

    # ---- package-version sets -------------------------------------------------------------
    def put_env(self, key: str, versions: Mapping[str, Any], first_seen: float | None = None) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR IGNORE INTO envs VALUES (?, ?, ?)",
                               (key, _dumps(dict(versions), "versions"), first_seen or time.time()))

    def envs(self) -> dict[str, dict[str, Any]]:
        return {k: json.loads(v) for k, v in self._rows("SELECT key, versions FROM envs")}

    # ---- counts ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        return {t: int(self._rows(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in ("jobs", "runs", "envs")}

    # ---- migration from store.json ----------------------------------------------------------
    def import_legacy(self, data: Mapping[str, Mapping[str, Any]],
                      windows_of: Any = None) -> dict[str, int]:
        """Copy the `jobs`, `runs` and `envs` tables of a TinyDB store.json (in document order), once.

        One transaction, which also records that the import happened: a crash before the commit
        leaves nothing imported, and a second call (store.json not yet rewritten) imports nothing.
        """
        with self.transaction():
            if self.meta("imported_store_json"):
                return {}

            def ordered(table: str) -> list[dict[str, Any]]:
                docs = data.get(table) or {}
                return [docs[k] for k in sorted(docs, key=lambda k: int(k) if str(k).isdigit() else 0)]

            jobs, runs, envs = ordered("jobs"), ordered("runs"), ordered("envs")
            self.put_jobs(jobs)
            for r in runs:
                self.add_run(r, windows_of(r) if windows_of is not None else None)
            for e in envs:
                self.put_env(e["key"], e.get("versions") or {}, e.get("first_seen"))
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('imported_store_json', ?)",
                               (_enc({"at": time.time(), "jobs": len(jobs), "runs": len(runs)}),))
        return {"jobs": len(jobs), "runs": len(runs), "envs": len(envs)}


def snapshot(src: Path, dest: Path) -> Path:
    """A consistent single-file copy of a live ledger (SQLite online backup, rollback journal), for
    a node that runs a job away from the workspace and only reads the store."""
    try:
        with contextlib.closing(sqlite3.connect(f"{Path(src).resolve().as_uri()}?mode=ro", uri=True)) as a, \
                contextlib.closing(sqlite3.connect(str(dest))) as b:
            a.backup(b)
            b.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot copy the ledger {src}: {exc}") from None
    return Path(dest)


__all__ = ["FINISHED_STATES", "LEDGER_FILE", "Ledger", "snapshot"]
