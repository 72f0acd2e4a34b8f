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
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from store.ledger_file import (
    GROUPS_FROM_METRICS,
    LEDGER_FILE,
    SCHEMA_VERSION,
    create,
    has_groups,
    import_store_json,
    migrate,
)
from store.run_listing import ListedRun, cells, cells_json
from store.storage import StoreError

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
        self._groups = False  # the file has metric_groups (checked until true: a writer may migrate it)

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, fsync: bool = True,
             progress: Callable[[str], None] | None = None) -> Ledger:
        """Writer: creates the file and schema, upgrading an older file (`progress` hears how far that
        is: ledger_file.migrate). Reader: `mode=ro`, sees every committed transaction."""
        path = Path(path)
        try:
            if readonly:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0,
                                       isolation_level=None, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
                create(conn)
            conn.execute("PRAGMA foreign_keys=ON")
            led = cls(conn, path, readonly=readonly)
            version = int(led.meta("schema_version") or 0)
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(f"ledger {path} has schema version {version}, newer than this program "
                                 f"understands ({SCHEMA_VERSION}); upgrade forecast-console")
            if not readonly and version < SCHEMA_VERSION:
                migrate(conn, version, progress)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"ledger {path} cannot be opened ({exc}); it was left unchanged: restore it "
                             "from a backup or move it away to start a new one") from None
        return led

    @classmethod
    def in_memory(cls) -> Ledger:
        """A private ledger (a reader of a workspace whose store.json was not migrated yet)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        create(conn)
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

    def _rows(self, sql: str, args: Iterable[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args if isinstance(args, Mapping) else tuple(args)).fetchall()

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
            # With a limit (the engine's newest finished jobs at start) the newest rows are read
            # backwards until `limit` match (`+state`: not through jobs_state, which would fetch
            # every match and sort them): at 10k finished jobs 1 ms instead of 10-25.
            where = f" WHERE {'+' if limit is not None else ''}state IN ({','.join('?' * len(st))})"
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
                "INSERT INTO runs (run_id, model, symbol, job_id, created_at, doc, listed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rec["run_id"], rec["model"], rec["symbol"], rec.get("job_id"), rec["created_at"], doc,
                 cells_json(rec)))
            seq = cur.lastrowid
            mets = [(seq, k, float(v), rec["model"], rec["symbol"], rec["created_at"], win.get(k.split("_", 1)[0]))
                    for k, v in (rec.get("metrics") or {}).items()
                    if isinstance(v, int | float) and math.isfinite(v)]
            self._conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)", mets)
            # an existing group is left alone (no page written): most runs add no group
            self._conn.executemany("INSERT OR IGNORE INTO metric_groups VALUES (?, ?, ?, ?)",
                                   [(k, m, sym, w or "") for _, k, _, m, sym, _, w in mets])

    def _has_groups(self) -> bool:
        if not self._groups:
            with self._lock:
                self._groups = has_groups(self._conn)
        return self._groups

    def mixed_windows(self, metric: str, model: str | None = None, symbol: str | None = None
                      ) -> tuple[str, str, str, str, str] | None:
        """(symbol, key a, run a, key b, run b) when `metric` of one symbol was computed on
        different windows among the selected runs (the first such symbol in name order), else None.

        Read from metric_groups (one row per metric, model, symbol and window key), so the cost
        grows with the number of groups, not of runs (every best()/top_k() pays this check)."""
        table, none = ("metric_groups", "''") if self._has_groups() else ("metrics", "NULL")
        conds, args = ["name = ?", f"windows IS NOT {none}"], [metric]
        for col, val in (("model", model), ("symbol", symbol)):
            if val is not None:
                conds.append(f"{col} = ?")
                args.append(val)
        row = self._rows(f"SELECT symbol, MIN(windows), MAX(windows) FROM {table} WHERE {' AND '.join(conds)} "
                         "GROUP BY symbol HAVING MIN(windows) <> MAX(windows) ORDER BY symbol LIMIT 1", args)
        if not row:
            return None
        sym, a, b = row[0]

        def example(key: str) -> str:
            """The oldest selected run of `sym` whose `metric` was computed on windows `key`."""
            models = [model] if model is not None else [
                m for (m,) in self._rows(f"SELECT DISTINCT model FROM {table} WHERE name = ? AND symbol = ? "
                                         "AND windows = ?", (metric, sym, key))]
            seqs = [r[0] for m in models for r in self._rows(
                "SELECT seq FROM metrics WHERE name = ? AND model = ? AND symbol = ? AND windows = ? "
                "ORDER BY seq LIMIT 1", (metric, m, sym, key))]
            r = self._rows("SELECT run_id FROM runs WHERE seq = ?", (min(seqs),)) if seqs else []
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
        """Runs with a finite `metric`, best first (ties: older first), read lazily.

        One (model, symbol): a range of the ranking index. Several: each group's best rows from
        that index (a correlated LIMIT per group of metric_groups), merged; so every shape of
        query is index seeks whatever the number of runs."""
        def order(t: str) -> str:
            return f"{t}value {'ASC' if minimize else 'DESC'}, {t}created_at ASC, {t}seq ASC"

        def where(t: str) -> str:
            return " AND ".join([f"{t}name = :name"] + [f"{t}{c} = :{c}" for c, v in (("model", model), ("symbol", symbol))
                                                        if v is not None])

        args: dict[str, Any] = {"name": metric, "model": model, "symbol": symbol}
        if (model is not None and symbol is not None) or not self._has_groups():
            sql = (f"SELECT r.doc FROM metrics m JOIN runs r ON r.seq = m.seq WHERE {where('m.')} "
                   f"ORDER BY {order('m.')} LIMIT :page OFFSET :offset")
        else:
            sql = (f"SELECT r.doc FROM (SELECT DISTINCT model, symbol FROM metric_groups WHERE {where('')}) g "
                   "JOIN metrics m ON m.rowid IN (SELECT rowid FROM metrics WHERE name = :name AND "
                   f"model = g.model AND symbol = g.symbol ORDER BY {order('')} LIMIT :upto) "
                   f"JOIN runs r ON r.seq = m.seq ORDER BY {order('m.')} LIMIT :page OFFSET :offset")
        offset = 0
        while limit is None or offset < limit:  # pages: no cursor stays open across other calls
            page = 256 if limit is None else min(256, limit - offset)
            rows = self._rows(sql, {**args, "page": page, "offset": offset, "upto": offset + page})
            for (d,) in rows:
                yield json.loads(d)
            offset += len(rows)
            if len(rows) < page:
                return

    def listed_runs(self, newest: int | None = None) -> list[ListedRun]:
        """Every run (or only the `newest` n by creation time), oldest first, as its table cells
        (store/run_listing.py) and the kind, state and times of the job that logged it (each job's
        document read once, however many runs it logged). A version-1 file no writer has migrated
        yet has no cells: its documents are decoded here.

        `newest` picks the runs a table sorted newest first shows at its top (ties in creation
        time: the older row first, as a stable sort of the whole list has them), reading only
        those rows' cells: the first screenful of 10k runs in ~30 ms instead of the whole list."""
        cut = self._has_groups()
        col = "listed" if cut else "doc"
        ids: list[str] = []
        if newest is None:
            rows = self._rows(f"SELECT {col}, job_id FROM runs ORDER BY seq")
            of_jobs = "SELECT job_id FROM runs"
        else:
            rows = self._rows(f"SELECT {col}, job_id FROM runs WHERE seq IN (SELECT seq FROM runs "
                              "ORDER BY created_at DESC, seq LIMIT ?) ORDER BY seq", (max(0, int(newest)),))
            ids = list({jid for _, jid in rows if jid})
            of_jobs = ",".join("?" * len(ids))
        jobs = {jid: job for jid, *job in self._rows(
            "SELECT id, json_extract(doc, '$.kind'), state, json_extract(doc, '$.started_at'), "
            f"json_extract(doc, '$.finished_at') FROM jobs WHERE id IN ({of_jobs})", ids)}
        none = (None, None, None, None)
        loads = json.loads
        if cut:
            return [ListedRun._make([*loads(text), *jobs.get(jid, none)]) for text, jid in rows]
        return [ListedRun._make([*cells(loads(text)), *jobs.get(jid, none)]) for text, jid in rows]

    def run_groups(self) -> list[tuple[str, str, int]]:
        """(model, symbol, number of runs), sorted."""
        return [(m, s, int(n)) for m, s, n in
                self._rows("SELECT model, symbol, COUNT(*) FROM runs GROUP BY model, symbol ORDER BY model, symbol")]

    def run_count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM runs")[0][0])

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Forget runs (their metric rows go with them; the groups they alone had are recomputed)."""
        n = 0
        with self.transaction():
            touched: set[tuple[str, str, str]] = set()
            for rid in run_ids:
                touched.update(self._conn.execute(
                    "SELECT m.name, m.model, m.symbol FROM metrics m JOIN runs r ON r.seq = m.seq "
                    "WHERE r.run_id = ?", (rid,)).fetchall())
                n += self._conn.execute("DELETE FROM runs WHERE run_id = ?", (rid,)).rowcount
            for group in touched:
                where = " WHERE name = ? AND model = ? AND symbol = ?"
                self._conn.execute("DELETE FROM metric_groups" + where, group)
                self._conn.execute(GROUPS_FROM_METRICS + where, group)
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
    def import_legacy(self, data: Mapping[str, Mapping[str, Any]], windows_of: Any = None) -> dict[str, int]:
        """Copy the jobs, runs and envs of a TinyDB store.json, once (store.ledger_file.import_store_json)."""
        return import_store_json(self, data, windows_of)


__all__ = ["LEDGER_FILE", "Ledger"]
