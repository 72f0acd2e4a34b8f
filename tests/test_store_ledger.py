"""The SQLite ledger: a workspace written by the TinyDB-only store migrates on first open (once,
crash-safely), readers see committed transactions only, and bad files are clear errors."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from store import Store, StoreError
from store.ledger import LEDGER_FILE, Ledger
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
