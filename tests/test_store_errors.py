"""Bad inputs give a clear, specific error and change nothing (file bytes compared before/after)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from store import Store, StoreError, Workspace
from store import storage as storage_mod


def _snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots except the lock file (which names the current holder)."""
    out: dict[str, bytes] = {}
    for root in roots:
        if root.exists():
            for p in sorted(root.rglob("*")):
                if p.is_file() and p.name != "store.lock":
                    out[str(p)] = p.read_bytes()
    return out


@pytest.fixture
def filled(tmp_path: Path):
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    st = Store.open(ws, hyperparams_dir=hp)
    rid = st.log_run("toto", "AAPL", {"lr": 1e-4}, {"val_mae_pct": 3.0, "test_mae_pct": 3.4})
    st.promote("toto", "AAPL", rid)
    yield st, ws, hp, rid
    st.close()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda st, rid: st.log_run("gpt5", "AAPL", {}, {"val_mae_pct": 1.0}), "unknown model 'gpt5'"),
        (lambda st, rid: st.log_run("toto", "../etc", {}, {"val_mae_pct": 1.0}), "looks like a path"),
        (lambda st, rid: st.log_run("toto", "AAPL/../../x", {}, {"val_mae_pct": 1.0}), "looks like a path"),
        (lambda st, rid: st.log_run("toto", "", {}, {}), "symbol is empty"),
        (lambda st, rid: st.log_run("toto", "AAPL", {}, {"val_mae_pct": "low"}), "must be a number"),
        (lambda st, rid: st.log_run("toto", "AAPL", {"f": object()}, {}), r"hyperparams\.f is not JSON"),
        (lambda st, rid: st.log_run("toto", "AAPL", [1, 2], {}), "hyperparams must be a dict"),
        (lambda st, rid: st.log_run("toto", "AAPL", {}, {}, training_time=-1), "training_time"),
        (lambda st, rid: st.log_run("toto", "AAPL", {}, {}, seed="x"), "seed must be an integer"),
        (lambda st, rid: st.runs(symbol="../etc"), "looks like a path"),
        (lambda st, rid: st.best(model="nope"), "unknown model"),
        (lambda st, rid: st.promote("toto", "AAPL", "20240101-000000-000-toto-deadbeef"), "no run with id"),
        (lambda st, rid: st.promote("toto", "MSFT", rid), "not toto/MSFT; nothing was promoted"),
        (lambda st, rid: st.promote("toto", "../etc", rid), "looks like a path"),
        (lambda st, rid: st.promote("kronos", "AAPL"), "no pick for kronos/AAPL"),
        (lambda st, rid: st.rollback("kronos", "AAPL"), "nothing to roll back for kronos/AAPL"),
        (lambda st, rid: st.set_pick("toto", "AAPL", {"validation": {}, "horizon": 4}), r"pick toto/AAPL h=4.*config"),
        (lambda st, rid: st.set_pick("toto", "AAPL", {"config": {}}), r"pick toto/AAPL.*horizon: Field required"),
        (lambda st, rid: st.set_pick("toto", "AAPL", {"config": {}, "horizon": 4, "validation": {"mae_pct": "x"}}),
         r"validation\.mae_pct"),
        (lambda st, rid: st.set_pick("toto", "AAPL", {"config": {}, "horizon": 4, "source_run": "missing"}),
         "does not exist"),
        (lambda st, rid: st.put_job({"state": "queued"}), "must be a dict with an 'id'"),
        (lambda st, rid: st.put_job({"id": "../../x"}), "job id"),
        (lambda st, rid: st.put_baselines([{"symbol": "AAPL", "model": "naive", "span": "test"}]),
         r"baseline row naive/AAPL in baselines\[0\] is invalid: horizon: Field required"),
        (lambda st, rid: st.put_baselines([{"symbol": "AAPL", "model": "naive", "span": "test", "horizon": 0}]),
         "horizon: Input should be greater than or equal to 1"),
        (lambda st, rid: st.put_comparisons([{"symbol": "AAPL", "model": "toto", "horizon": 1, "dm_pvalue": 0.1}]),
         "dm_pvalue: Extra inputs are not permitted"),
        (lambda st, rid: st.put_comparisons([{"symbol": "../x", "model": "toto", "horizon": 1}]), "looks like a path"),
        (lambda st, rid: st.top_k(0), "k must be a positive integer"),
        (lambda st, rid: st.compare(run_ids=["nope"]), "no run with id 'nope'"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(filled, call, match) -> None:
    st, ws, hp, rid = filled
    before = _snapshot(ws, hp)
    with pytest.raises(StoreError, match=match):
        call(st, rid)
    assert _snapshot(ws, hp) == before
    # the store is still usable afterwards
    assert st.get_run(rid) is not None


def test_promoting_a_missing_run_writes_no_file(tmp_path: Path) -> None:
    hp = tmp_path / "hp"
    with Store.open(tmp_path / "ws", hyperparams_dir=hp) as st:
        store_bytes = st.workspace.store_file.read_bytes()
        with pytest.raises(StoreError, match="no run with id 'r-1'; nothing was promoted"):
            st.promote("toto", "AAPL", "r-1")
        assert not hp.exists()
        assert st.workspace.store_file.read_bytes() == store_bytes
        assert st.promotions() == []


def test_promoting_a_run_without_validation_metrics_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp") as st:
        rid = st.log_run("toto", "AAPL", {"lr": 1}, {"test_mae_pct": 2.0})
        with pytest.raises(StoreError, match="no validation metrics"):
            st.promote("toto", "AAPL", rid)
        assert not (tmp_path / "hp").exists()


def _make_store(ws: Path) -> bytes:
    with Store.open(ws) as st:
        for i in range(5):
            st.log_run("toto", "AAPL", {"i": i}, {"val_mae_pct": float(i)})
    return (ws / "store.json").read_bytes()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-a-table-map"])
@pytest.mark.parametrize("readonly", [False, True])
def test_corrupt_or_truncated_store_is_a_clear_error_with_a_backup(tmp_path: Path, damage: str,
                                                                    readonly: bool) -> None:
    ws = tmp_path / "ws"
    good = _make_store(ws)
    bad = {"garbage": b"{this is not json", "truncated": good[: len(good) // 2], "empty": b"",
           "not-a-table-map": b"[1, 2, 3]"}[damage]
    (ws / "store.json").write_bytes(bad)
    with pytest.raises(StoreError) as info:
        Store.open(ws, readonly=readonly)
    msg = str(info.value)
    assert str(ws / "store.json") in msg and "corrupt" in msg and "left unchanged" in msg
    assert (ws / "store.json").read_bytes() == bad  # never reset to empty
    backups = list(ws.glob("store.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == bad
    assert str(backups[0]) in msg
    with pytest.raises(StoreError, match="corrupt"):  # retrying does not pile up copies
        Store.open(ws, readonly=True)
    assert list(ws.glob("store.json.corrupt-*")) == backups
    # a failed writer open released the lock: fixing the file lets the next open succeed
    (ws / "store.json").write_bytes(good)
    with Store.open(ws) as st:
        assert len(st.runs()) == 5


def test_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _make_store(ws)
    data = json.loads((ws / "store.json").read_bytes())
    data["_meta"]["1"]["schema_version"] = storage_mod.SCHEMA_VERSION + 1
    raw = json.dumps(data).encode()
    (ws / "store.json").write_bytes(raw)
    with pytest.raises(StoreError, match="newer than this program understands"):
        Store.open(ws)
    assert (ws / "store.json").read_bytes() == raw


def test_migration_hook_upgrades_the_writer_file_and_readers_in_memory(tmp_path: Path, monkeypatch) -> None:
    ws = tmp_path / "ws"
    with Store.open(ws) as st:
        st.put_baselines([{"symbol": "AAPL", "model": "naive_persistence", "horizon": 16, "span": "val", "n_rows": 9}])
    before = (ws / "store.json").read_bytes()
    nxt = storage_mod.SCHEMA_VERSION + 1

    def upgrade(data: dict) -> dict:
        for rec in data.get("baselines", {}).values():
            rec["n_rows"] = 10  # what this step changes
        return data

    monkeypatch.setattr(storage_mod, "SCHEMA_VERSION", nxt)
    monkeypatch.setitem(storage_mod.MIGRATIONS, nxt - 1, upgrade)
    ro = Store.open(ws, readonly=True)
    assert ro.schema_version == nxt and [r.n_rows if hasattr(r, "n_rows") else r["n_rows"] for r in ro.baselines()] == [10]
    assert (ws / "store.json").read_bytes() == before  # a reader never writes
    with Store.open(ws) as st:
        assert st.schema_version == nxt
    on_disk = json.loads((ws / "store.json").read_bytes())
    assert on_disk["_meta"]["1"]["schema_version"] == nxt
    assert [r["n_rows"] for r in on_disk["baselines"].values()] == [10]


def test_plain_tinydb_file_without_version_is_adopted(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "store.json").write_text(json.dumps({"jobs": {"1": {"id": "j1", "state": "queued"}}}))
    with Store.open(ws) as st:
        assert st.schema_version == storage_mod.SCHEMA_VERSION
        assert st.get_job("j1")["state"] == "queued"


def test_nan_metric_is_kept_as_missing_and_never_wins(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws") as st:
        bad = st.log_run("toto", "AAPL", {}, {"val_mae_pct": math.nan, "val_crps": math.inf})
        good = st.log_run("toto", "AAPL", {}, {"val_mae_pct": 9.0})
        assert st.get_run(bad)["metrics"] == {"val_mae_pct": None, "val_crps": None}
        assert st.best()["run_id"] == good
        assert b"NaN" not in st.workspace.store_file.read_bytes()


def test_workspace_ids_cannot_escape(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    for bad in ("../x", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(StoreError, match="not valid"):
            ws.run_dir(bad)
        with pytest.raises(StoreError, match="not valid"):
            ws.job_dir(bad)
    assert ws.run_dir("20250101-000000-001-toto-ab12cd34").parent == tmp_path.resolve() / "runs"


def test_workspace_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(StoreError, match="is not a folder"):
        Store.open(f)
    assert f.read_text() == "x"


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    st = Store.open(tmp_path / "ws")
    st.close()
    with pytest.raises(StoreError, match="closed"):
        st.log_run("toto", "AAPL", {}, {})
