"""The ledger file: its SQLite schema, its migrations, and a consistent copy of it (store/ledger.py
opens the file and holds the queries).

Why the metrics table has one ranking index and a table of groups: a write's cost is the number
of B-tree pages it dirties (each goes to the WAL and is fsynced at commit), and a run's metric
values land on random pages of every value-ordered index. A validate run records ~22 metrics, so
six indexes per metric made one `log_run` dirty ~130 pages. Now a metric value is in one ranking
index, `(name, model, symbol, value, created_at)`, and `metric_groups` holds each distinct
(metric, model, symbol, window key) once; inserting a run whose groups already exist writes
nothing there. Queries over several models or symbols take each group's best rows from the
ranking index and merge them (the groups are few: models x symbols), and the mixed-windows check
reads the groups table alone.

Each run row also holds `listed`, the run's cells in a table of runs (store/run_listing.py).

Version 1 (six metric indexes, no groups table, no `listed`) is migrated by the first writer that opens it, in
one transaction (groups filled from the metric rows, the four extra indexes dropped), saying how far
it is to a `progress` callback; a reader of a version-1 file that no writer has opened yet queries the
metric rows directly (`has_groups`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.run_listing import cells_json
from store.storage import StoreError

if TYPE_CHECKING:  # pragma: no cover
    from store.ledger import Ledger

LEDGER_FILE = "ledger.db"
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT, parent TEXT, created_at REAL, updated_at REAL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
    symbol TEXT NOT NULL, job_id TEXT, created_at REAL NOT NULL, doc TEXT NOT NULL, listed TEXT);
CREATE INDEX IF NOT EXISTS runs_model_symbol ON runs(model, symbol);
CREATE INDEX IF NOT EXISTS runs_symbol ON runs(symbol);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job_id);
CREATE TABLE IF NOT EXISTS metrics (
    seq INTEGER NOT NULL REFERENCES runs(seq) ON DELETE CASCADE, name TEXT NOT NULL, value REAL NOT NULL,
    model TEXT NOT NULL, symbol TEXT NOT NULL, created_at REAL NOT NULL, windows TEXT);
CREATE INDEX IF NOT EXISTS metrics_model_symbol ON metrics(name, model, symbol, value, created_at);
CREATE INDEX IF NOT EXISTS metrics_seq ON metrics(seq);
CREATE TABLE IF NOT EXISTS envs (key TEXT PRIMARY KEY, versions TEXT NOT NULL, first_seen REAL);
CREATE TABLE IF NOT EXISTS intake (job_id TEXT PRIMARY KEY, at REAL NOT NULL, outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (job_id TEXT PRIMARY KEY, events_offset INTEGER NOT NULL, at REAL NOT NULL);
"""

#: Created with a new file, or by the migration from version 1 in the transaction that fills it (a
#: reader never sees it empty beside metric rows).
GROUPS_SCHEMA = """CREATE TABLE IF NOT EXISTS metric_groups (
    name TEXT NOT NULL, model TEXT NOT NULL, symbol TEXT NOT NULL, windows TEXT NOT NULL,
    PRIMARY KEY (name, model, symbol, windows)) WITHOUT ROWID"""

#: The group rows of some metric rows (`windows` '' where none was recorded). No DISTINCT: the primary
#: key ignores repeats, a lookup in a table of a few thousand rows, where DISTINCT sorted every metric
#: row first (x4-7 slower over a whole version-1 file).
GROUPS_FROM_METRICS = ("INSERT OR IGNORE INTO metric_groups "
                       "SELECT name, model, symbol, COALESCE(windows, '') FROM metrics")

#: What the first writer of an older ledger says while it upgrades it (Ledger.open's `progress`).
UPGRADING = f"upgrading the run ledger to version {SCHEMA_VERSION}"
#: Run documents decoded per step of the upgrade (bounded memory; one progress line at most per step).
_UPGRADE_CHUNK = 2000
_PROGRESS_EVERY_S = 1.0

#: Indexes of version 1 that the groups table and the merge over groups replace.
_V1_INDEXES = ("metrics_all", "metrics_model", "metrics_symbol", "metrics_windows", "metrics_windows_model")


def create(conn: sqlite3.Connection) -> int:
    """Create what is missing (a new file gets the current schema); returns the file's version."""
    conn.executescript(SCHEMA)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None:
        return int(row[0])
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(GROUPS_SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    conn.execute("COMMIT")
    return SCHEMA_VERSION


def migrate(conn: sqlite3.Connection, version: int, progress: Callable[[str], None] | None = None) -> int:
    """Bring a writer's file from `version` to SCHEMA_VERSION (each step one transaction: a crash
    or a kill midway leaves the file as it was, usable, and the next writer starts over).

    1 -> 2 also gives every run its `listed` cells (store/run_listing.py): each run document is
    decoded once here so that listing runs never does it. That is most of the upgrade's time (about a
    minute at 100k runs, once), so `progress` gets a line saying how far it is ("upgrading the run
    ledger to version 2: 40,000 / 100,000 runs") at most once a second, and as it starts and ends."""
    if version == 1:
        say = _Progress(progress)
        conn.execute("BEGIN IMMEDIATE")
        try:
            total = int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
            say(f"{UPGRADING}: 0 / {total:,} runs", force=True)
            conn.execute("ALTER TABLE runs ADD COLUMN listed TEXT")
            done, last = 0, -1
            while rows := conn.execute("SELECT seq, doc FROM runs WHERE seq > ? ORDER BY seq LIMIT ?",
                                       (last, _UPGRADE_CHUNK)).fetchall():
                conn.executemany("UPDATE runs SET listed = ? WHERE seq = ?",
                                 ((cells_json(json.loads(doc)), seq) for seq, doc in rows))
                done, last = done + len(rows), rows[-1][0]
                say(f"{UPGRADING}: {done:,} / {total:,} runs")
            say(f"{UPGRADING}: {done:,} / {total:,} runs; indexing their metrics", force=True)
            conn.execute(GROUPS_SCHEMA)
            conn.execute(GROUPS_FROM_METRICS)
            for name in _V1_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
            conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        version = 2
    return version


class _Progress:
    """A progress callback called at most every `_PROGRESS_EVERY_S` seconds (or when forced)."""

    def __init__(self, callback: Callable[[str], None] | None) -> None:
        self.callback, self._at = callback, 0.0

    def __call__(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.callback is not None and (force or now - self._at >= _PROGRESS_EVERY_S):
            self._at = now
            self.callback(text)


def has_groups(conn: sqlite3.Connection) -> bool:
    """Whether the file has the groups table (False only for an unmigrated version-1 file)."""
    return bool(conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'metric_groups'")
                .fetchone())


def import_store_json(led: Ledger, data: Mapping[str, Mapping[str, Any]],
                      windows_of: Callable[[Mapping[str, Any]], Mapping[str, str | None]] | None = None
                      ) -> dict[str, int]:
    """Copy the `jobs`, `runs` and `envs` tables of a TinyDB store.json (in document order), once.

    One transaction, which also records that the import happened: a crash before the commit
    leaves nothing imported, and a second call (store.json not yet rewritten) imports nothing.
    """
    with led.transaction():
        if led.meta("imported_store_json"):
            return {}

        def ordered(table: str) -> list[dict[str, Any]]:
            docs = data.get(table) or {}
            return [docs[k] for k in sorted(docs, key=lambda k: int(k) if str(k).isdigit() else 0)]

        jobs, runs, envs = ordered("jobs"), ordered("runs"), ordered("envs")
        led.put_jobs(jobs)
        for r in runs:
            led.add_run(r, windows_of(r) if windows_of is not None else None)
        for e in envs:
            led.put_env(e["key"], e.get("versions") or {}, e.get("first_seen"))
        led.set_meta("imported_store_json", json.dumps({"at": time.time(), "jobs": len(jobs), "runs": len(runs)}))
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


__all__ = ["GROUPS_FROM_METRICS", "GROUPS_SCHEMA", "LEDGER_FILE", "SCHEMA", "SCHEMA_VERSION", "UPGRADING",
           "create", "has_groups", "import_store_json", "migrate", "snapshot"]
