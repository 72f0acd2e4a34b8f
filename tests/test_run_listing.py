"""Store.listed_runs (the Runs screen's listing: each run's cells stored with it, jobs joined in SQL)
gives exactly the rows the whole run documents and job summaries give, on a real ledger on disk,
for runs of every odd shape: metrics missing or NaN, flags where a number is expected, horizons
recorded in hyperparameters only or as null, window specs missing or not specs,
failed/running/forgotten jobs."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from console import run_browser as rb
from store import Store
from store.run_listing import listed_run

SPEC = {"span": "val", "count": 12, "stride": 1, "rows_covered": 27, "first_origin": 10, "last_origin": 21}


def _odd_run(st: Store, i: int, rng: random.Random) -> None:
    hp: dict[str, object] = {"lr": 1e-4}
    extra: dict[str, object] = {}
    mets: dict[str, object] = {}
    if i % 2:
        mets["val_mae_pct"] = rng.uniform(1, 9)
    if i % 3 == 0:
        mets["test_mae_pct"] = float("nan") if i % 9 == 0 else rng.uniform(1, 9)  # NaN: stored as missing
    if i % 5 == 0:
        mets["val_loss"] = True  # a flag where the row expects a number
    elif i % 5 == 1:
        mets["val_loss"] = rng.uniform(0, 2)
    match i % 4:
        case 0:
            hp["horizon"] = 16
        case 1:
            extra["horizon"] = 64
            hp["horizon"] = 16  # extra wins
        case 2:
            extra["horizon"] = None  # recorded as unknown: no fallback to the hyperparameter
            hp["horizon"] = 16
    if i % 6 == 0:
        hp["preset"] = "tiny"
    elif i % 6 == 1:
        extra["preset"] = "full"
    match i % 7:
        case 0:
            extra["val_windows"] = SPEC
            extra["test_windows"] = {**SPEC, "span": "test", "count": 40 + i}
        case 1:
            extra["val_windows"] = {**SPEC, "surplus": 1}  # not a WindowSpec: "?w"
        case 2:
            extra["test_windows"] = [1, 2]
    job = None if i % 11 == 10 else f"job-{i % 40:03d}"  # some runs have no job, some a forgotten one
    st.log_run(rng.choice(["toto", "kronos"]), rng.choice(["SPY", "AAPL"]), hp, mets,
               training_time=None if i % 4 == 3 else rng.uniform(1, 100), job_id=job, extra=extra)


def test_listed_runs_give_the_rows_of_the_whole_documents(tmp_path: Path) -> None:
    rng = random.Random(5)
    ws = tmp_path / "ws"
    with Store.open(ws, hyperparams_dir=tmp_path / "hp", fsync=False) as st:
        states = ["succeeded", "failed", "running", "cancelled"]
        st.put_jobs([{"id": f"job-{k:03d}", "kind": ["train", "validate", "sweep"][k % 3], "state": states[k % 4],
                      "started_at": None if k % 5 == 0 else 100.0 + k, "finished_at": 150.0 + 2 * k}
                     for k in range(35)])  # job-035 … job-039 are gone
        with st.transaction():
            for i in range(300):
                _odd_run(st, i, rng)
        ro = Store.open(ws, readonly=True)
        for store in (st, ro):
            docs = store.runs()
            jobs = store.job_summaries(d["job_id"] for d in docs if d.get("job_id"))
            whole = rb.rows_of([listed_run(d, jobs.get(d["job_id"] or "")) for d in docs], store.picks(),
                               store.promotions())
            listed = rb.load_runs(store).rows
            assert listed == whole and len(listed) == 300
        ro.close()
    rows = {r.run_id: r for r in listed}
    assert {r.kind for r in rows.values()} == {"train", "validate", "sweep", "—"}
    assert {r.state for r in rows.values()} >= {"failed", "running", "—"}
    assert {r.horizon for r in rows.values()} == {16, 64, None}
    assert {r.val_windows for r in rows.values()} == {"val 12w", "val ?w"}
    assert any(r.val_mae_pct is None for r in rows.values())
    assert {r.val_loss is None for r in rows.values()} == {True, False}
    assert all(r.test_mae_pct is None or math.isfinite(r.test_mae_pct) for r in rows.values())
    assert any(r.duration_s is None for r in rows.values())


def test_newest_runs_are_the_top_of_the_newest_first_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`listed_runs(newest=n)` (the Runs screen's first screenful) = the first n of a stable
    newest-first sort of the whole list, ties and runs logged out of time order included."""
    from types import SimpleNamespace

    from store import tracker

    clock = {"t": 0.0}
    monkeypatch.setattr(tracker, "time", SimpleNamespace(time=lambda: clock["t"]))
    ws = tmp_path / "ws"
    with Store.open(ws, hyperparams_dir=tmp_path / "hp", fsync=False) as st:
        st.put_jobs([{"id": "job-a", "kind": "validate", "state": "failed", "started_at": 1.0, "finished_at": 4.0}])
        for i, t in enumerate([5.0, 3.0, 5.0, 1.0, 9.0, 9.0, 2.0, 5.0, 7.0, 5.0]):
            clock["t"] = t
            st.log_run("toto", "SPY", {"horizon": 16}, {"val_mae_pct": float(i)}, job_id="job-a" if i % 2 else None)
        ro = Store.open(ws, readonly=True)
        for store in (st, ro):
            whole = store.listed_runs()
            for n in (0, 1, 4, 5, 10, 50):
                top = sorted(whole, key=lambda r: r.created_at, reverse=True)[:n]
                assert store.listed_runs(newest=n) == [r for r in whole if r in top], n
            page = rb.load_runs(store, 4)
            assert page.total == 10 and [r.created_at for r in page.rows] == [5.0, 9.0, 9.0, 7.0]
            assert {(r.kind, r.state) for r in page.rows} == {("validate", "failed"), ("—", "—")}
        ro.close()
