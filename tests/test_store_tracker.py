"""Run tracking, queries and the other tables, against a real TinyDB file."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from store import Store, StoreError
from store.tracker import git_commit, new_run_id, package_versions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def st(tmp_path: Path):
    s = Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp")
    yield s
    s.close()


def test_log_run_records_provenance(st: Store) -> None:
    rid = st.log_run("toto", "aapl", {"lr": np.float64(1e-4), "rank": np.int64(8)},
                     {"val_mae_pct": np.float32(3.5), "test_mae_pct": 4},
                     checkpoint=Path("runs/x/adapter"), training_time=12.5, notes="first", seed=7,
                     job_id="job-1", extra={"windows": {"horizon": 16}})
    assert re.fullmatch(r"\d{8}-\d{6}-\d{3}-toto-[0-9a-f]{8}", rid)
    r = st.get_run(rid)
    assert r["symbol"] == "AAPL" and r["model"] == "toto"
    assert r["hyperparams"] == {"lr": 1e-4, "rank": 8} and r["metrics"]["test_mae_pct"] == 4.0
    assert r["seed"] == 7 and r["job_id"] == "job-1" and r["checkpoint"] == "runs/x/adapter"
    assert r["training_time"] == 12.5 and r["notes"] == "first"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert r["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    assert r["versions"]["numpy"] == np.__version__
    assert r["versions"]["tinydb"] == "4.9.0"
    # versions are stored once per distinct environment, not per run
    st.log_run("toto", "AAPL", {}, {})
    assert st.counts()["envs"] == 1
    # the returned record is a copy: mutating it changes nothing stored
    r["metrics"]["val_mae_pct"] = -1
    assert st.get_run(rid)["metrics"]["val_mae_pct"] == pytest.approx(3.5)


def test_log_run_never_imports_torch(tmp_path: Path) -> None:
    code = ("import sys; from store import Store; s = Store.open(sys.argv[1]);"
            "s.log_run('toto', 'AAPL', {}, {'val_mae_pct': 1.0}); s.report(); s.close();"
            "print(sorted(m for m in ('torch', 'textual') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ws")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_run_ids_are_collision_free() -> None:
    ids = [new_run_id("toto") for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert git_commit() == git_commit()  # cached
    assert package_versions()["torch"] is not None


def test_best_top_k_and_filters(st: Store, tmp_path: Path) -> None:
    a = st.log_run("toto", "AAPL", {"lr": 1}, {"val_mae_pct": 5.0, "test_mae_pct": 1.0})
    b = st.log_run("toto", "AAPL", {"lr": 2}, {"val_mae_pct": 3.0, "test_mae_pct": 9.0}, checkpoint="runs/b/ckpt")
    c = st.log_run("toto", "MSFT", {"lr": 1}, {"val_mae_pct": 1.0})
    d = st.log_run("kronos", "AAPL", {"t": 0.7}, {"val_mae_pct": 0.5, "val_coverage80": 0.9})
    st.log_run("toto", "AAPL", {"lr": 3}, {"test_mae_pct": 0.1})  # no validation metric: never "best"
    assert st.best()["run_id"] == d
    assert st.best(model="toto")["run_id"] == c
    assert st.best(model="toto", symbol="aapl")["run_id"] == b  # chosen on val, not on test
    assert st.best("val_mae_pct", "toto", "AAPL", minimize=False)["run_id"] == a
    assert st.best("val_coverage80", minimize=False)["run_id"] == d
    assert st.best("val_nothing") is None
    # require_checkpoint: only runs whose checkpoint exists on disk
    assert st.best(model="toto", symbol="AAPL", require_checkpoint=True) is None
    (st.workspace.root / "runs" / "b").mkdir(parents=True)
    (st.workspace.root / "runs" / "b" / "ckpt").write_text("w")
    assert st.best(model="toto", symbol="AAPL", require_checkpoint=True)["run_id"] == b
    assert [r["run_id"] for r in st.top_k(3)] == [d, c, b]
    assert [r["run_id"] for r in st.top_k(10, model="toto", symbol="AAPL")] == [b, a]
    assert [r["run_id"] for r in st.runs(model="toto", lr=1)] == [a, c]
    assert [r["run_id"] for r in st.runs(symbol="MSFT")] == [c]
    assert st.runs(model="naive") == []


def test_indexes_stay_correct_across_interleaved_writes_and_queries(st: Store) -> None:
    """best/top_k are kept up to date incrementally by log_run; check against brute force."""
    rng = random.Random(5)
    models, symbols = ("toto", "kronos"), ("AAPL", "SPY", "MSFT")
    for i in range(150):
        m, s = rng.choice(models), rng.choice(symbols)
        metrics = {"val_mae_pct": round(rng.uniform(1, 10), 1)} if rng.random() > 0.1 else {}
        st.log_run(m, s, {"i": i}, metrics)
        if i % 7 == 0:
            st.put_job({"id": f"j{i}", "state": "running"})  # unrelated writes must not confuse the index
        qm, qs = rng.choice((None, *models)), rng.choice((None, *symbols))
        mini = rng.random() > 0.3
        runs = [r for r in st.runs(qm, qs) if r["metrics"].get("val_mae_pct") is not None]
        sign = 1 if mini else -1
        runs.sort(key=lambda r: (sign * r["metrics"]["val_mae_pct"], r["created_at"]))
        got = st.best("val_mae_pct", qm, qs, minimize=mini)
        assert (got["run_id"] if got else None) == (runs[0]["run_id"] if runs else None)
        top = [r["run_id"] for r in st.top_k(5, "val_mae_pct", qm, qs, minimize=mini)]
        assert top == [r["run_id"] for r in runs[:5]]


def test_compare_impact_and_report(st: Store) -> None:
    ids = [st.log_run("toto", "AAPL", {"lr": lr, "opt": {"name": "adam"}}, {"val_mae_pct": v, "test_mae_pct": v + 1})
           for lr, v in [(1e-4, 4.0), (1e-4, 6.0), (3e-4, 2.0)]]
    df = st.compare()
    assert list(df["run_id"]) == ids
    assert {"hp.lr", "hp.opt.name", "val_mae_pct", "test_mae_pct"} <= set(df.columns)
    df2 = st.compare(run_ids=[ids[2], ids[0]], metrics=["val_mae_pct"], sort_by="val_mae_pct")
    assert list(df2["run_id"]) == [ids[2], ids[0]] and "test_mae_pct" not in df2.columns
    imp = st.hyperparameter_impact("toto", "lr", "val_mae_pct")
    assert list(imp["lr"]) == [3e-4, 1e-4]
    assert list(imp["count"]) == [1, 2] and list(imp["mean"]) == [2.0, 5.0]
    assert st.hyperparameter_impact("toto", "missing", "val_mae_pct").empty
    st.set_pick("toto", "AAPL", {"config": {"lr": 3e-4}, "validation": {"mae_pct": 2.0}, "source_run": ids[2],
                                 "horizon": 16})
    st.promote("toto", "AAPL")
    md = st.report()
    assert md.startswith("# forecast-console report")
    assert f"| toto | AAPL | 3 | {ids[2]} | 2 | 3 |" in md
    assert "## Current picks" in md and "| toto | AAPL | 16 | tiny | mae_pct | 2 (val ?w) |" in md
    assert "| promote | toto | AAPL | 16 | pick |" in md


def test_picks_keep_the_previous_one(st: Store) -> None:
    assert st.pick("toto", "AAPL") is None and st.previous_pick("toto", "AAPL") is None
    st.set_pick("toto", "AAPL", {"config": {"a": 1}, "validation": {"mae_pct": 3.0}, "horizon": 16})
    st.set_pick("toto", "aapl", {"config": {"a": 2}, "validation": {"mae_pct": 2.0}, "horizon": 16})
    st.set_pick("kronos", "SPY", {"config": {"t": 1}, "horizon": 16})
    assert st.pick("toto", "AAPL").config == {"a": 2}
    assert st.previous_pick("toto", "AAPL").config == {"a": 1}
    assert [(p.model, p.symbol) for p in st.picks()] == [("kronos", "SPY"), ("toto", "AAPL")]
    assert st.counts()["best"] == 2


def test_picks_at_two_horizons_coexist(st: Store) -> None:
    """A decision is (symbol, horizon, model, preset): h=16 and h=64 picks never replace each other."""
    st.set_pick("toto", "SPY", {"config": {"a": 16}, "validation": {"mae_pct": 1.0}, "horizon": 16})
    st.set_pick("toto", "SPY", {"config": {"a": 64}, "validation": {"mae_pct": 9.0}, "horizon": 64})
    assert st.pick("toto", "SPY", 16).config == {"a": 16} and st.pick("toto", "SPY", 64).config == {"a": 64}
    assert st.previous_pick("toto", "SPY", 16) is None and st.previous_pick("toto", "SPY", 64) is None
    assert [(p.horizon, p.score()) for p in st.picks("SPY")] == [(16, 1.0), (64, 9.0)]
    assert [p.horizon for p in st.picks(horizon=64)] == [64]
    assert st.pick("toto", "SPY").horizon == 64  # no horizon given: the most recently set
    with pytest.raises(StoreError, match="picks at horizons 16, 64: say which with --horizon"):
        st.promote("toto", "SPY")


def test_jobs_baselines_comparisons_upsert(st: Store) -> None:
    st.put_job({"id": "j1", "kind": "train", "state": "queued", "priority": 0})
    st.put_job({"id": "j2", "kind": "train", "state": "queued"})
    st.put_job({"id": "j1", "kind": "train", "state": "running", "pid": 42})
    assert st.get_job("j1") == {"id": "j1", "kind": "train", "state": "running", "pid": 42}
    assert [j["id"] for j in st.jobs(state="queued")] == ["j2"]
    assert len(st.jobs()) == 2 and st.get_job("nope") is None

    row = {"symbol": "aapl", "model": "naive_persistence", "horizon": 16, "span": "test", "metrics": {"mae_pct": 5.0}}
    st.put_baselines([row, {**row, "horizon": 64, "metrics": {"mae_pct": 9.0}}])
    st.put_baselines([{**row, "metrics": {"mae_pct": 4.0}}])
    got = sorted(st.baselines(symbol="AAPL"), key=lambda r: r.horizon)
    assert [(r.horizon, r.metrics.mae_pct) for r in got] == [(16, 4.0), (64, 9.0)]
    assert [r.metrics.mae_pct for r in st.baselines(horizon=64)] == [9.0]

    cmp = {"symbol": "SPY", "horizon": 16, "model": "toto", "test": {"mae_pct": 2.0}, "winner": True}
    st.put_comparisons([cmp, {**cmp, "model": "naive", "winner": False}])
    st.put_comparisons([{**cmp, "test": {"mae_pct": 1.5}}])
    rows = {r.model: r for r in st.comparisons("SPY")}
    assert rows["toto"].test.mae_pct == 1.5 and rows["naive"].winner is False
    assert st.comparisons("AAPL") == []
    # all of it survives a reopen
    st.close()
    with Store.open(st.workspace.root, readonly=True) as ro:
        assert ro.get_job("j1")["state"] == "running" and len(ro.baselines()) == 2 and len(ro.comparisons()) == 2


def test_runs_go_to_the_ledger_and_store_json_stays_small(st: Store) -> None:
    import sqlite3

    before = st.workspace.store_file.read_bytes()
    for i in range(50):
        st.log_run("toto", "AAPL", {"lr": 1e-4, "rank": 8}, {"val_mae_pct": float(i), "test_mae_pct": 1.0})
    raw = st.workspace.store_file.read_bytes()
    assert raw == before  # runs never rewrite the decision store
    data = json.loads(raw)
    assert "runs" not in data and data["_meta"]["1"]["schema_version"] == 2
    con = sqlite3.connect(st.workspace.root / "ledger.db")
    docs = [json.loads(d) for (d,) in con.execute("SELECT doc FROM runs")]
    assert len(docs) == 50 and "versions" not in docs[0]  # stored once in envs
    assert con.execute("SELECT COUNT(*) FROM envs").fetchone()[0] == 1
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_metric_flags_are_kept(st: Store) -> None:
    rid = st.log_run("toto", "AAPL", {}, {"val_mae_pct": 2.0, "stopped_early": True, "best_epoch": 3})
    assert st.get_run(rid)["metrics"] == {"val_mae_pct": 2.0, "stopped_early": True, "best_epoch": 3.0}


def test_best_refuses_to_rank_val_metrics_from_different_windows(st: Store) -> None:
    from store.storage import StoreError

    whole = {"span": "val", "count": 192, "stride": 1, "rows_covered": 255, "first_origin": 1190, "last_origin": 1381}
    last32 = {**whole, "count": 32, "rows_covered": 95, "first_origin": 1350}
    st.log_run("toto", "AAPL", {}, {"val_mae_pct": 2.0}, extra={"val_windows": whole})
    st.log_run("toto", "AAPL", {}, {"val_mae_pct": 1.0}, extra={"val_windows": whole})
    st.log_run("toto", "MSFT", {}, {"val_mae_pct": 0.5}, extra={"val_windows": last32})  # other symbol: own windows
    assert st.best("val_mae_pct", model="toto", symbol="AAPL")["metrics"]["val_mae_pct"] == 1.0
    st.log_run("kronos", "AAPL", {}, {"val_mae_pct": 0.1}, extra={"val_windows": last32})
    with pytest.raises(StoreError, match=r"val_mae_pct of AAPL was computed on different val windows"):
        st.best("val_mae_pct", symbol="AAPL")
    with pytest.raises(StoreError, match="not comparable"):
        st.top_k(3, "val_mae_pct")
    assert st.best("val_mae_pct", model="kronos")["metrics"]["val_mae_pct"] == 0.1


def test_best_at_one_horizon_ranks_that_horizons_runs_and_still_checks_their_windows(st: Store) -> None:
    """Runs of one symbol at h=16 and h=64 are on different windows: ranked together they are refused
    (the message names --horizon); at one horizon they rank, and a window mix within it is refused."""
    from store.storage import StoreError

    h16 = {"span": "val", "count": 240, "stride": 1, "rows_covered": 255, "first_origin": 1190, "last_origin": 1429}
    h64 = {**h16, "count": 192, "last_origin": 1381}
    st.log_run("toto", "NVDA", {"horizon": 16}, {"val_mae_pct": 5.3}, extra={"val_windows": h16})
    best64 = st.log_run("toto", "NVDA", {"horizon": 64}, {"val_mae_pct": 14.5}, extra={"val_windows": h64})
    st.log_run("toto", "NVDA", {"horizon": 64}, {"val_mae_pct": 15.0}, extra={"val_windows": h64, "horizon": 64})
    with pytest.raises(StoreError, match=r"rank one horizon's runs \(--horizon\)"):
        st.best("val_mae_pct", model="toto")
    assert st.best("val_mae_pct", model="toto", horizon=16)["metrics"]["val_mae_pct"] == 5.3
    assert st.best("val_mae_pct", model="toto", horizon=64)["run_id"] == best64
    assert [r["metrics"]["val_mae_pct"] for r in st.top_k(5, "val_mae_pct", horizon=64)] == [14.5, 15.0]
    assert st.best("val_mae_pct", model="toto", horizon=32) is None
    st.log_run("toto", "NVDA", {"horizon": 16}, {"val_mae_pct": 1.0}, extra={"val_windows": {**h16, "count": 12}})
    with pytest.raises(StoreError, match=r"val_mae_pct of NVDA at h=16 was computed on different val windows"):
        st.best("val_mae_pct", model="toto", horizon=16)


def test_mixed_windows_check_walks_every_symbol_with_and_without_a_model(st: Store) -> None:
    """The check reads index ends per symbol: a mix in the last symbol, or only among one model's
    runs, is found; a model or symbol filter that leaves one kind of windows ranks."""
    from store.storage import StoreError

    a = {"span": "val", "count": 8, "stride": 1, "rows_covered": 72, "first_origin": 100, "last_origin": 107}
    b = {**a, "count": 4, "first_origin": 104}
    for sym in ("AAPL", "MSFT", "SPY"):
        st.log_run("toto", sym, {}, {"val_mae_pct": 3.0}, extra={"val_windows": a})
    st.log_run("kronos", "SPY", {}, {"val_mae_pct": 1.0}, extra={"val_windows": b})  # last symbol, other model
    assert st.best("val_mae_pct", model="toto")["metrics"]["val_mae_pct"] == 3.0
    assert st.best("val_mae_pct", model="kronos")["symbol"] == "SPY"
    assert st.best("val_mae_pct", symbol="MSFT")["model"] == "toto"
    with pytest.raises(StoreError, match="val_mae_pct of SPY was computed on different val windows"):
        st.best("val_mae_pct")
    st.log_run("toto", "MSFT", {}, {"val_mae_pct": 2.0}, extra={"val_windows": b})  # a mix within toto
    with pytest.raises(StoreError, match="val_mae_pct of MSFT"):
        st.best("val_mae_pct", model="toto")
    assert st.best("val_mae_pct", model="toto", symbol="AAPL")["metrics"]["val_mae_pct"] == 3.0
    assert st.best("test_mae_pct", model="toto") is None  # no such metric: nothing to check or rank
