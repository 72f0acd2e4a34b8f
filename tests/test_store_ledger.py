"""The SQLite ledger: a workspace written by the TinyDB-only store migrates on first open (once,
crash-safely), readers see committed transactions only, and bad files are clear errors."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_store import as_version_1
from store import Store, StoreError, ledger_file
from store.ledger import LEDGER_FILE, Ledger
from store.ledger_file import UPGRADING
from store.storage import WorkspaceLock

FIXTURE = Path(__file__).parent / "fixtures" / "workspace_v1"


def _copy_v1(tmp_path: Path) -> tuple[Path, dict]:
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    return ws, json.loads((ws / "store.json").read_text())


def test_a_workspace_written_by_the_tinydb_store_migrates_on_first_open(tmp_path: Path) -> None:
    ws, old = _copy_v1(tmp_path)
    assert old["_meta"]["1"]["schema_version"] == 1 and len(old["runs"]) == 3 and len(old["jobs"]) == 2
    # A reader before any writer: reads jobs and runs from store.json itself, writes nothing.
    with Store.open(ws, readonly=True) as ro:
        assert [j["id"] for j in ro.jobs()] == [d["id"] for d in old["jobs"].values()]
        assert ro.best(model="toto", symbol="SPY")["metrics"]["val_mae_pct"] == 3.0
    assert not (ws / LEDGER_FILE).exists() and json.loads((ws / "store.json").read_text()) == old
    with Store.open(ws, hyperparams_dir=tmp_path / "hp") as st:
        jobs = st.jobs()
        assert [j["id"] for j in jobs] == [d["id"] for d in old["jobs"].values()]
        assert all(j["state"] == "succeeded" and j["spec"]["kind"] == "baseline" for j in jobs)
        runs = st.runs()
        assert [r["run_id"] for r in runs] == [d["run_id"] for d in old["runs"].values()]
        assert runs[0]["versions"] == next(iter(old["envs"].values()))["versions"]
        assert st.best(model="toto", symbol="SPY")["run_id"] == runs[2]["run_id"]
        # The v1 pick names no horizon (nor does its run): it cannot be keyed by decision identity and
        # is dropped, kept in store.json.pre-ledger. (v1 baseline rows stay in store.json as they were.)
        assert st.picks() == []
        st.promote("toto", "SPY", source=runs[2]["run_id"])  # a migrated run is found in the ledger
        st.log_run("toto", "SPY", {"lr": 1.0}, {"val_mae_pct": 1.0})
    new = json.loads((ws / "store.json").read_text())
    assert {"jobs", "runs", "envs"}.isdisjoint(new) and new["_meta"]["1"]["schema_version"] == 2
    assert json.loads((ws / "store.json.pre-ledger").read_text()) == old  # the original is kept
    with Store.open(ws, hyperparams_dir=tmp_path / "hp") as st:  # a second open imports nothing again
        assert len(st.runs()) == 4 and len(st.jobs()) == 2
    with Store.open(ws, readonly=True) as ro:
        assert len(ro.runs()) == 4 and ro.counts()["runs"] == 4


def test_a_crash_between_import_and_rewrite_imports_once(tmp_path: Path) -> None:
    ws, old = _copy_v1(tmp_path)
    led = Ledger.open(ws / LEDGER_FILE)
    assert led.import_legacy(old) == {"jobs": 2, "runs": 3, "envs": 1}
    led.close()  # "crash": store.json still holds the tables
    with Store.open(ws, hyperparams_dir=tmp_path / "hp") as st:
        assert len(st.runs()) == 3 and len(st.jobs()) == 2
        assert "runs" not in json.loads((ws / "store.json").read_text())


def test_a_failed_import_leaves_nothing_half_done(tmp_path: Path) -> None:
    ws, old = _copy_v1(tmp_path)
    bad = json.loads(json.dumps(old))
    bad["runs"]["3"]["run_id"] = bad["runs"]["1"]["run_id"]  # duplicate id: the transaction fails
    led = Ledger.open(ws / LEDGER_FILE)
    with pytest.raises(sqlite3.IntegrityError):
        led.import_legacy(bad)
    assert led.counts() == {"jobs": 0, "runs": 0, "envs": 0} and led.meta("imported_store_json") is None


def test_a_reader_sees_whole_transactions_only(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp") as st:
        ro = Store.open(tmp_path / "ws", readonly=True)
        with st.transaction():
            st.put_job({"id": "j1", "state": "running"})
            st.log_run("toto", "SPY", {}, {"val_mae_pct": 1.0}, job_id="j1")
            assert ro.get_job("j1") is None and ro.runs() == []  # not committed yet
        assert ro.get_job("j1")["state"] == "running" and len(ro.runs(job_id="j1")) == 1
        with pytest.raises(RuntimeError), st.transaction():
            st.put_job({"id": "j2", "state": "queued"})
            raise RuntimeError("crash in the middle of a tick")
        assert st.get_job("j2") is None and ro.get_job("j2") is None  # rolled back as a whole
        with pytest.raises(StoreError, match="read-only"):
            ro.put_job({"id": "j3"})
        ro.close()


def test_best_and_top_k_use_the_metric_index(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp") as st:
        ids = [st.log_run(m, s, {"i": i}, {"val_mae_pct": float((i * 7) % 11), "val_up": float(i)})
               for i, (m, s) in enumerate([("toto", "SPY"), ("kronos", "SPY"), ("toto", "AAPL")] * 4)]
        runs = {r["run_id"]: r for r in st.runs()}
        def ref(model=None, symbol=None, metric="val_mae_pct", minimize=True):
            rs = [r for r in runs.values() if (model is None or r["model"] == model)
                  and (symbol is None or r["symbol"] == symbol)]
            rs.sort(key=lambda r: ((1 if minimize else -1) * r["metrics"][metric], r["created_at"]))
            return [r["run_id"] for r in rs]
        for model, symbol in [(None, None), ("toto", None), (None, "SPY"), ("toto", "AAPL")]:
            assert [r["run_id"] for r in st.top_k(20, model=model, symbol=symbol)] == ref(model, symbol)
            assert st.best(model=model, symbol=symbol)["run_id"] == ref(model, symbol)[0]
            assert st.best("val_up", model, symbol, minimize=False)["run_id"] == ref(model, symbol, "val_up", False)[0]
        assert st.best("no_such_metric") is None and len(ids) == 12


def test_a_damaged_ledger_is_a_clear_error_and_left_alone(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / LEDGER_FILE).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="ledger .* cannot be opened"):
        Store.open(ws, hyperparams_dir=tmp_path / "hp")
    assert (ws / LEDGER_FILE).read_bytes() == b"this is not a database" * 100
    lock = WorkspaceLock(ws / "store.lock")
    lock.acquire()  # the failed open released the workspace lock
    lock.release()


def _ranked_ref(led: Ledger, metric: str, model: str | None, symbol: str | None, minimize: bool) -> list[str]:
    """Every run with a finite `metric` in rank order, from the run documents alone."""
    rs = [r for r in led.runs(model, symbol) if isinstance(r["metrics"].get(metric), float)]
    rs.sort(key=lambda r: ((1 if minimize else -1) * r["metrics"][metric], r["created_at"]))
    return [r["run_id"] for r in rs]


def test_ranking_merges_groups_exactly_past_one_page(tmp_path: Path) -> None:
    """Over several models/symbols, ranking is a merge of each group's best rows: it must give the
    full order (ties on value broken by age) however far it is read, also past a 256-row page."""
    import random

    led = Ledger.open(tmp_path / LEDGER_FILE, fsync=False)
    rng = random.Random(3)
    with led.transaction():
        for i in range(700):
            m, s = rng.choice(["toto", "kronos", "chronos2"]), rng.choice(["SPY", "AAPL", "MSFT", "NVDA"])
            mets = {"val_mae_pct": float(rng.randint(0, 40))}  # many ties
            if i % 3:
                mets["test_mae_pct"] = rng.uniform(0, 5)
            led.add_run({"run_id": f"r{i:04d}", "model": m, "symbol": s, "created_at": 1000.0 + i, "metrics": mets})
    for metric in ("val_mae_pct", "test_mae_pct"):
        for model, symbol in [(None, None), ("toto", None), (None, "SPY"), ("kronos", "AAPL")]:
            for minimize in (True, False):
                ref = _ranked_ref(led, metric, model, symbol, minimize)
                got = [r["run_id"] for r in led.ranked(metric, model, symbol, minimize=minimize)]
                assert got == ref, (metric, model, symbol, minimize)
                assert [r["run_id"] for r in led.ranked(metric, model, symbol, minimize=minimize, limit=300)] \
                    == ref[:300]
    assert list(led.ranked("no_such_metric")) == []
    led.close()


def _answers(st: Store) -> list[object]:
    """What the queries a version-1 file must keep answering say (rankings, the listing, a mixed-windows error)."""
    out: list[object] = [[r["run_id"] for r in st.top_k(20, "test_mae_pct", model=m)] for m in (None, "toto")]
    out.append(st.listed_runs())
    out.append(st.best("val_mae_pct", symbol="SPY")["run_id"])
    with pytest.raises(StoreError, match="val_mae_pct of AAPL was computed on different val windows") as e:
        st.best("val_mae_pct")
    return [*out, str(e.value)]


def _version_1_workspace(tmp_path: Path) -> tuple[Path, list[object]]:
    """A workspace whose ledger is a version-1 file of 9 runs, and what it answered as version 2."""
    ws = tmp_path / "ws"
    whole = {"span": "val", "count": 12, "stride": 1, "rows_covered": 27, "first_origin": 10, "last_origin": 21}
    with Store.open(ws, hyperparams_dir=tmp_path / "hp") as st:
        for i, (m, s) in enumerate([("toto", "SPY"), ("kronos", "SPY"), ("toto", "AAPL")] * 3):
            st.log_run(m, s, {}, {"val_mae_pct": float((i * 5) % 7), "test_mae_pct": float(i)},
                       extra={"val_windows": {**whole, "count": 12 + (i == 8)}})  # AAPL's last: other windows
    with Store.open(ws, readonly=True) as ro:
        expected = _answers(ro)
    as_version_1(ws / LEDGER_FILE)
    return ws, expected


def test_a_version_1_ledger_reads_the_same_before_and_after_its_migration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, expected = _version_1_workspace(tmp_path)
    answers = _answers
    monkeypatch.setattr(ledger_file, "_UPGRADE_CHUNK", 4)  # the 9 runs in three steps ...
    monkeypatch.setattr(ledger_file, "_PROGRESS_EVERY_S", 0.0)  # ... each saying how far it is
    said: list[str] = []
    with Store.open(ws, readonly=True) as ro:  # no writer has opened it since: queried as it is
        assert ro._ledger.meta("schema_version") == "1" and answers(ro) == expected
        with Store.open(ws, hyperparams_dir=tmp_path / "hp", progress=said.append) as st:  # the writer migrates it
            assert said == [f"upgrading the run ledger to version 2: {n} / 9 runs" for n in (0, 4, 8, 9)] \
                + ["upgrading the run ledger to version 2: 9 / 9 runs; indexing their metrics"]
            assert answers(st) == expected and answers(ro) == expected
            st.log_run("toto", "MSFT", {}, {"test_mae_pct": -1.0})  # a group the migration did not see
            assert st.top_k(1, "test_mae_pct")[0]["symbol"] == "MSFT" == ro.top_k(1, "test_mae_pct")[0]["symbol"]
            assert ro.listed_runs()[:-1] == expected[2] and ro.listed_runs()[-1].symbol == "MSFT"
    con = sqlite3.connect(ws / LEDGER_FILE)
    indexes = {n for (n,) in con.execute("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'metrics'")}
    assert indexes == {"metrics_model_symbol", "metrics_seq"}
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    con.close()


def test_deleting_runs_forgets_the_windows_only_they_had(tmp_path: Path) -> None:
    a = {"span": "val", "count": 12, "stride": 1, "rows_covered": 27, "first_origin": 10, "last_origin": 21}
    with Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp") as st:
        keep = st.log_run("toto", "SPY", {}, {"val_mae_pct": 2.0}, extra={"val_windows": a})
        odd = st.log_run("kronos", "SPY", {}, {"val_mae_pct": 1.0}, extra={"val_windows": {**a, "count": 3}})
        with pytest.raises(StoreError, match=f"run {keep} .* and run {odd}"):
            st.best()
        assert st._ledger.delete_runs([odd]) == 1
        assert st.best()["run_id"] == keep and st.top_k(5, model="kronos") == []


# A writer killed (SIGKILL) while it upgrades a version-1 ledger: after its second step of runs.
_KILLED_MID_UPGRADE = r"""
import os, signal, sys
from store import Store, ledger_file
ledger_file._UPGRADE_CHUNK = 4
def say(text):
    if text.startswith(ledger_file.UPGRADING + ": 8 / "):
        os.kill(os.getpid(), signal.SIGKILL)
ledger_file._PROGRESS_EVERY_S = 0.0  # every step says how far it is
Store.open(sys.argv[1], hyperparams_dir=sys.argv[2], progress=say)
"""


def test_a_writer_killed_mid_upgrade_leaves_the_version_1_ledger_usable_and_the_next_writer_upgrades_it(
        tmp_path: Path) -> None:
    ws, expected = _version_1_workspace(tmp_path)
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_UPGRADE, str(ws), str(tmp_path / "hp")],
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    con = sqlite3.connect(ws / LEDGER_FILE)  # the half-done upgrade was never committed
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "1"
    assert "listed" not in {c[1] for c in con.execute("PRAGMA table_info(runs)")}
    con.close()
    with Store.open(ws, readonly=True) as ro:
        assert _answers(ro) == expected
    said: list[str] = []
    with Store.open(ws, hyperparams_dir=tmp_path / "hp", progress=said.append) as st:
        assert st._ledger.meta("schema_version") == "2" and _answers(st) == expected
    assert said[-1] == f"{UPGRADING}: 9 / 9 runs; indexing their metrics"
