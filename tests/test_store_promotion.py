"""Promotion, rollback, the promoted-file schema, load_best_config, and the headless commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import main as cli_main
from store import Store, StoreError
from store.best_config import HYPERPARAMS_SCHEMA_VERSION, load_best_config

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_KEYS = {"schema_version", "symbol", "model", "preset", "horizon", "context", "seed", "config", "validation",
               "test", "windows", "naive", "adapter", "base_weights", "selection_metric", "source", "promoted_at",
               "promoted_by", "previous", "provenance"}


@pytest.fixture
def st(tmp_path: Path):
    s = Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp")
    yield s
    s.close()


def _run(st: Store, val: float, **hp) -> str:
    return st.log_run("kronos", "BTCUSD", {"temperature": 0.152, "top_p": 0.83, "horizon": 1, "context": 232, **hp},
                      {"val_mae_pct": val, "val_price_mae": val * 10, "test_mae_pct": val + 0.5, "train_loss": 0.1},
                      seed=3, job_id="job-7", extra={"spans": {"train": [0, 100], "val": [100, 120]}})


def test_promote_a_run_writes_the_documented_schema(st: Store, tmp_path: Path) -> None:
    rid = _run(st, 2.0)
    path = st.promote("kronos", "btcusd", rid, by="alice")
    assert path == tmp_path / "hp" / "kronos" / "BTCUSD.json"
    doc = json.loads(path.read_text())
    assert set(doc) == SCHEMA_KEYS
    assert doc["schema_version"] == HYPERPARAMS_SCHEMA_VERSION == 2
    assert (doc["symbol"], doc["model"], doc["promoted_by"]) == ("BTCUSD", "kronos", "alice")
    assert doc["config"]["temperature"] == 0.152
    assert doc["validation"] == {"mae_pct": 2.0, "price_mae": 20.0}
    assert doc["test"] == {"mae_pct": 2.5}
    assert doc["windows"] == {"horizon": 1, "context": 232, "spans": {"train": [0, 100], "val": [100, 120]},
                              "validation": None, "test": None}
    assert (doc["horizon"], doc["context"], doc["adapter"]) == (1, 232, None)
    assert doc["selection_metric"] == "val_mae_pct"
    assert doc["source"] == {"kind": "run", "run_id": rid, "job_id": "job-7", "pick": False}
    assert doc["previous"] is None
    assert doc["provenance"]["seed"] == 3 and "torch" in doc["provenance"]["versions"]
    assert load_best_config("kronos", "btcusd", tmp_path / "hp") == doc
    audit = st.promotions("kronos", "BTCUSD")
    assert [a.action for a in audit] == ["promote"] and audit[0].content == doc and audit[0].by == "alice"


def test_promote_pick_then_run_then_rollback_chain(st: Store, tmp_path: Path) -> None:
    r1, r2 = _run(st, 3.0), _run(st, 2.0, top_p=0.9)
    st.set_pick("kronos", "BTCUSD", {"config": {"temperature": 0.5}, "selection_metric": "val_mae_pct",
                                     "validation": {"mae_pct": 3.0}, "test": {"mae_pct": 3.1},
                                     "horizon": 1, "context": 64, "source_run": r1,
                                     "naive": {"method": "drift", "validation": {"mae_pct": 3.2}, "test": {}},
                                     "calibrated": {"verdict": "kept: improved", "test_before": 3.3},
                                     "selection_span": "val+test veto"})
    path = st.promote("kronos", "BTCUSD")  # from the pick
    first = json.loads(path.read_text())
    assert first["source"] == {"kind": "pick", "run_id": r1, "job_id": "job-7", "pick": True}
    # the pick's decision context travels with it (naive on the same windows, calibration verdict, veto)
    assert first["naive"]["method"] == "drift" and first["naive"]["validation"] == {"mae_pct": 3.2}
    assert first["decision"] == {"calibrated": {"verdict": "kept: improved", "test_before": 3.3},
                                 "selection_span": "val+test veto"}
    assert first["config"] == {"temperature": 0.5} and first["windows"]["spans"] is None
    st.promote("kronos", "BTCUSD", r2)
    second = json.loads(path.read_text())
    assert second["previous"] == {k: v for k, v in first.items() if k != "previous"}
    assert second["source"]["run_id"] == r2

    assert st.rollback("kronos", "BTCUSD") == path
    assert json.loads(path.read_text()) == first
    assert st.rollback("kronos", "BTCUSD") is None  # the first promotion replaced nothing
    assert not path.exists()
    before = st.workspace.store_file.read_bytes()
    with pytest.raises(StoreError, match="nothing to roll back"):
        st.rollback("kronos", "BTCUSD")
    assert st.workspace.store_file.read_bytes() == before and not path.exists()
    assert [a.action for a in st.promotions()] == ["promote", "promote", "rollback", "rollback"]
    with pytest.raises(FileNotFoundError, match="forecast-console promote --model kronos --symbol BTCUSD"):
        load_best_config("kronos", "BTCUSD", tmp_path / "hp")


def test_rollback_restores_a_file_that_predates_the_store(st: Store, tmp_path: Path) -> None:
    legacy = tmp_path / "hp" / "kronos" / "BTCUSD.json"
    legacy.parent.mkdir(parents=True)
    legacy_doc = {"symbol": "BTCUSD", "model": "kronos", "config": {"temperature": 0.152}, "metadata": {}}
    legacy.write_text(json.dumps(legacy_doc))
    st.promote("kronos", "BTCUSD", _run(st, 1.0))
    assert json.loads(legacy.read_text())["previous"] == legacy_doc
    st.rollback("kronos", "BTCUSD")
    assert json.loads(legacy.read_text()) == legacy_doc


def test_best_config_imports_nothing_heavy(tmp_path: Path) -> None:
    code = ("import sys; from store.best_config import load_best_config;"
            "print(sorted(m for m in ('torch', 'textual', 'tinydb', 'pandas', 'numpy', 'store.store') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_load_best_config_refuses_bad_names_and_newer_schemas(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="not a valid name"):
        load_best_config("toto", "../etc", tmp_path)
    with pytest.raises(ValueError, match="not a valid name"):
        load_best_config("../toto", "AAPL", tmp_path)
    f = tmp_path / "toto" / "AAPL.json"
    f.parent.mkdir()
    f.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_best_config("toto", "AAPL", tmp_path)
    f.write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="missing schema_version"):
        load_best_config("toto", "AAPL", tmp_path)
    doc = {k: {} for k in ("config", "validation", "test", "windows", "source")}
    doc.update(schema_version=99, symbol="AAPL", model="toto", selection_metric="val_mae_pct", promoted_at="x")
    f.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="schema version 99"):
        load_best_config("toto", "AAPL", tmp_path)
    doc["schema_version"] = 1
    f.write_text(json.dumps(doc))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(tmp_path))
    assert load_best_config("toto", "aapl")["symbol"] == "AAPL"


# --- headless commands ---------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("FORECAST_WORKSPACE", str(tmp_path / "ws"))  # restored after the test
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(tmp_path / "hp"))
    args = ["--workspace", str(tmp_path / "ws"), "--hyperparams", str(tmp_path / "hp")]

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli_main([*args, *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_cli_runs_best_promote_rollback_report(cli, tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp") as st:
        r1 = st.log_run("toto", "AAPL", {"lr": 1e-4}, {"val_mae_pct": 3.0, "test_mae_pct": 3.3},
                        checkpoint="runs/r1/adapter")
        r2 = st.log_run("toto", "AAPL", {"lr": 3e-4}, {"val_mae_pct": 2.0, "test_mae_pct": 3.9})
    (tmp_path / "ws" / "runs" / "r1" / "adapter").mkdir(parents=True)

    code, out, _ = cli("runs", "--model", "toto")
    assert code == 0 and r1 in out and r2 in out and "2 run(s)" in out
    assert "3 ?w" in out and "3.3 ?w" in out  # no window spec recorded: the count says it is unknown
    code, out, _ = cli("runs", "--json", "--symbol", "AAPL")
    assert code == 0 and [r["run_id"] for r in json.loads(out)] == [r1, r2]
    code, out, _ = cli("best", "--model", "toto", "--symbol", "AAPL")
    assert code == 0 and r2 in out and "test_mae_pct = 3.9" in out
    # ranked on test: the validation figure is shown beside it (not a "test_test_mae_pct" column)
    code, out, _ = cli("best", "--model", "toto", "--metric", "test_mae_pct")
    assert code == 0 and r1 in out and "test_mae_pct = 3.3 ?w   val_mae_pct = 3 ?w" in out
    code, out, _ = cli("runs", "--metric", "test_mae_pct")
    assert code == 0 and out.split()[4:6] == ["test_mae_pct", "val_mae_pct"] and "test_test" not in out
    code, out, _ = cli("best", "--model", "toto", "--export-path")
    assert code == 0 and out.strip() == str(tmp_path / "ws" / "runs" / "r1" / "adapter")

    code, out, _ = cli("promote", "--model", "toto", "--symbol", "AAPL", "--run", r2)
    assert code == 0 and "hp/toto/AAPL.json" in out
    assert load_best_config("toto", "AAPL", tmp_path / "hp")["source"]["run_id"] == r2
    code, out, _ = cli("rollback", "--model", "toto", "--symbol", "AAPL")
    assert code == 0 and "removed" in out and not (tmp_path / "hp" / "toto" / "AAPL.json").exists()

    code, _, err = cli("report", "--out", str(tmp_path / "r.md"))
    assert code == 0 and "report written" in err
    assert (tmp_path / "r.md").read_text().startswith("# forecast-console report")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["promote", "--model", "toto", "--symbol", "AAPL", "--run", "nope"], "no run with id 'nope'"),
        (["promote", "--model", "toto", "--symbol", "AAPL"], "no pick for toto/AAPL"),
        (["rollback", "--model", "toto", "--symbol", "AAPL"], "nothing to roll back"),
        (["runs", "--symbol", "../etc"], "looks like a path"),
        (["best", "--model", "gpt"], "unknown model 'gpt'"),
        (["best", "--model", "toto"], "no run for toto has metric 'val_mae_pct'"),
    ],
)
def test_cli_errors_are_one_line_exit_2(cli, tmp_path: Path, argv: list[str], match: str) -> None:
    with Store.open(tmp_path / "ws"):
        pass
    before = (tmp_path / "ws" / "store.json").read_bytes()
    code, out, err = cli(*argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("forecast-console: error: ") and match in err
    assert (tmp_path / "ws" / "store.json").read_bytes() == before
    assert not (tmp_path / "hp").exists()


def test_cli_promote_when_something_else_holds_the_store(cli, tmp_path: Path) -> None:
    """A process that is not the engine service holds the writer lock: reads work, a write says why not."""
    with Store.open(tmp_path / "ws") as owner:
        owner.log_run("toto", "AAPL", {}, {"val_mae_pct": 1.0})
        code, out, _ = cli("runs")  # reading works beside the writer
        assert code == 0 and "1 run(s)" in out
        code, _, err = cli("promote", "--model", "toto", "--symbol", "AAPL")
        assert code == 2 and "open for writing by another process" in err


def test_cli_subprocess_exit_code(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "console.cli", "--workspace", str(tmp_path / "ws"),
                          "promote", "--model", "toto", "--symbol", "../etc"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("forecast-console: error: symbol '../etc' looks like a path")
    assert not (tmp_path / "ws").exists()  # refused before anything was created
