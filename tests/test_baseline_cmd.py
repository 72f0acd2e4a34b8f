"""Baseline task and `forecast-console baseline` on the shipped data, a real store and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from console.cli import main
from engine import paths
from engine.data import load_symbol, make_windows, split_spans
from engine.difficulty import tier
from engine.events import EventWriter, read_events
from engine.jobs import JobSpec
from engine.metrics import mae_pct
from engine.symbols import ALL_SYMBOLS, PRIORITY_SYMBOLS
from engine.tasks import baseline
from engine.tasks.context import TaskContext
from store.store import Store

SHIPPED = paths.PROJECT_ROOT / "trainingdata"
MODELS = ("naive_persistence", "naive_drift", "naive_seasonal")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated env: main() exports --workspace/--data as env vars; monkeypatch restores them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(paths.ENV_DATA, str(SHIPPED))
    monkeypatch.setenv(paths.ENV_WORKSPACE, str(tmp_path / "ws"))
    monkeypatch.setenv(paths.ENV_HYPERPARAMS, str(tmp_path / "hp"))
    return tmp_path / "ws"


def _persistence_mae_pct(sym: str, h: int, span_names: tuple[str, ...]) -> float:
    s = load_symbol(sym, [SHIPPED])
    sp = split_spans(s.n_rows, h)
    ws = [make_windows(s, sp, name, baseline.DEFAULT_CONTEXT, h) for name in span_names]
    y = np.concatenate([w.targets for w in ws])
    p = np.concatenate([np.repeat(w.last_close[:, None], h, axis=1) for w in ws])
    return mae_pct(y, p)


def test_rows_share_windows_and_match_definitions() -> None:
    syms, hs = ["SPY", "UNIUSD", "QUBT"], [1, 16, 64]
    rows = baseline.compute_baselines(syms, hs, [SHIPPED])
    assert len(rows) == len(syms) * len(hs) * len(MODELS)
    assert all(r["error"] is None and r["span"] == "test" for r in rows)
    for sym in syms:
        for h in hs:
            group = [r for r in rows if r["symbol"] == sym and r["horizon"] == h]
            assert sorted(r["model"] for r in group) == sorted(MODELS)
            # same windows for every method
            assert len({(r["n_windows"], r["target_start"], r["target_end"]) for r in group}) == 1
            pers = next(r for r in group if r["model"] == "naive_persistence")
            assert abs(pers["metrics"]["mae_pct"] - _persistence_mae_pct(sym, h, ("test",))) < 1e-9
            assert pers["metrics"]["dm_p_two_sided"] is None  # persistence vs itself: undefined
            drift = next(r for r in group if r["model"] == "naive_drift")
            # DM needs more windows than the overlap h (32 overlapping 64-step windows: undefined)
            assert (drift["metrics"]["dm_p_two_sided"] is not None) == (drift["n_windows"] > h)
            assert set(pers["metrics"]) == {"mae", "mae_pct", "return_mae", "rmse", "mase", "crps",
                                            "coverage80", "dm_stat", "dm_p_two_sided", "dm_p_better"}
        tier_rows = [r for r in rows if r["symbol"] == sym]
        pre = _persistence_mae_pct(sym, 64, ("train", "val"))
        assert all(r["tier_span"] == "pretest" and r["tier_horizon"] == 64 for r in tier_rows)
        assert abs(tier_rows[0]["tier_mae_pct"] - pre) < 1e-9
        s = load_symbol(sym, [SHIPPED])  # the window count the Stocks screen prints beside it
        pooled = sum(make_windows(s, split_spans(s.n_rows, 64), n, baseline.DEFAULT_CONTEXT, 64).n
                     for n in ("train", "val"))
        assert {r["tier_windows"] for r in tier_rows} == {pooled}
        assert {r["tier"] for r in tier_rows} == {tier(pre)}
    tiers = {r["symbol"]: r["tier"] for r in rows}
    assert tiers["SPY"] == "easy" and tiers["UNIUSD"] == "extreme"
    json.dumps(rows, allow_nan=False)  # JSON/TinyDB safe


def test_val_span_is_recorded_and_precedes_test() -> None:
    test = baseline.compute_baselines(["MSFT"], [16], [SHIPPED], span="test")
    val = baseline.compute_baselines(["MSFT"], [16], [SHIPPED], span="val")
    assert {r["span"] for r in val} == {"val"}
    assert val[0]["target_end"] < test[0]["target_start"]
    assert val[0]["metrics"]["mae"] != test[0]["metrics"]["mae"]
    # the tier never depends on which span is reported
    assert val[0]["tier_mae_pct"] == test[0]["tier_mae_pct"]


def test_bad_data_gives_error_rows_not_a_crash(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("GOOD", 600), ("SHORT", 60)):
        t = pd.date_range("2020-01-01", periods=n, freq="B")
        c = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        pd.DataFrame({"date": t.strftime("%Y-%m-%d"), "close": c}).to_csv(tmp_path / f"{name}.csv", index=False)
    (tmp_path / "BROKEN.csv").write_text("date,close\n2020-01-01,abc\n2020-01-02,1.0\n")
    rows = baseline.compute_baselines(["GOOD", "SHORT", "BROKEN"], [1, 64], [tmp_path])
    assert len(rows) == 3 * 2 * 3
    good = [r for r in rows if r["symbol"] == "GOOD"]
    assert all(r["error"] is None for r in good) and good[0]["tier"] != "unknown"
    short = [r for r in rows if r["symbol"] == "SHORT"]
    assert all("too few rows" in r["error"] and r["metrics"] == {} for r in short)
    assert {r["tier"] for r in short} == {"unknown"}
    broken = [r for r in rows if r["symbol"] == "BROKEN"]
    assert all("BROKEN.csv" in r["error"] for r in broken)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="horizon"):
        baseline.compute_baselines(["SPY"], [0], [SHIPPED])
    with pytest.raises(ValueError, match="span"):
        baseline.compute_baselines(["SPY"], [1], [SHIPPED], span="holdout")
    with pytest.raises(ValueError, match="naive method"):
        baseline.compute_baselines(["SPY"], [1], [SHIPPED], methods=("arima",))
    with pytest.raises(ValueError, match="path"):
        baseline.compute_baselines(["../SPY"], [1], [SHIPPED])


def test_all_24_symbols_three_horizons_all_score() -> None:
    """Every shipped symbol scores at every horizon (its speed is `bench/bench_engine.py --only scale`)."""
    rows = baseline.compute_baselines(ALL_SYMBOLS, [1, 16, 64], [SHIPPED])
    assert len(rows) == 24 * 3 * 3 and not [r for r in rows if r["error"]]


def test_cli_table_records_rows_in_store(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-w", str(env), "baseline", "--stocks", "SPY", "nvda", "--horizon", "1", "16"]) == 0
    out = capsys.readouterr().out
    assert "SPY" in out and "NVDA" in out and "h=16" in out and "12 rows recorded" in out
    with Store.open(env, readonly=True) as st:
        stored = st.baselines()
    # every MAE% cell says the windows it is measured on, as recorded (the tier its pooled count)
    spy = next(line for line in out.splitlines() if "SPY" in line)
    for r in stored:
        if (r.symbol, r.model) == ("SPY", "naive_persistence"):
            assert f"{r.metrics.mae_pct:.2f} {r.n_windows}w" in spy
            assert f"({r.tier_mae_pct:.2f} {r.tier_windows}w)" in spy
    assert len(stored) == 12
    assert {(r.symbol, r.model, r.horizon) for r in stored} == {
        (s, m, h) for s in ("SPY", "NVDA") for m in MODELS for h in (1, 16)
    }
    # a second run upserts (same key) instead of duplicating
    assert main(["-w", str(env), "baseline", "--stocks", "SPY", "--horizon", "1"]) == 0
    with Store.open(env, readonly=True) as st:
        assert len(st.baselines()) == 12


def test_cli_json_priority_val(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-w", str(env), "baseline", "--priority", "--horizon", "64", "--span", "val", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["span"] == "val" and doc["horizons"] == [64]
    assert set(doc["summary"]) == set(PRIORITY_SYMBOLS)
    assert len(doc["rows"]) == len(PRIORITY_SYMBOLS) * 3
    with Store.open(env, readonly=True) as st:
        stored = st.baselines(horizon=64)
    assert len(stored) == len(doc["rows"]) and {r.span for r in stored} == {"val"}


@pytest.mark.parametrize("bad", ["NOPE", "../SPY", "a/b"])
def test_cli_bad_symbol_exits_2_and_records_nothing(env: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    assert main(["-w", str(env), "baseline", "--stocks", "SPY", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("forecast-console: error:")
    assert ("unknown symbol" in err) if bad == "NOPE" else ("looks like a path" in err)
    assert not env.exists()  # nothing computed, nothing written
    # and an existing store is left byte-identical
    assert main(["-w", str(env), "baseline", "--stocks", "SPY", "--horizon", "1"]) == 0
    before = (env / "store.json").read_bytes()
    assert main(["-w", str(env), "baseline", "--stocks", bad]) == 2
    assert (env / "store.json").read_bytes() == before


def test_cli_bad_horizon_exits_2(env: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["-w", str(env), "baseline", "--all", "--horizon", "0"])
    assert exc.value.code == 2 and not env.exists()


def test_task_run_emits_events_and_returns_rows(tmp_path: Path) -> None:
    spec = JobSpec.create("baseline", ["SPY", "MSFT"], params={"horizon": [1, 64]})
    writer = EventWriter(tmp_path / "events.jsonl", spec.id)
    ctx = TaskContext(job_id=spec.id, workspace=tmp_path, job_dir=tmp_path, events=writer, data_dirs=[SHIPPED])
    try:
        result = baseline.run(spec, ctx)
    finally:
        writer.close()
    assert len(result["baselines"]) == 2 * 2 * 3
    assert result["summary"]["tiers"] == {"SPY": "easy", "MSFT": "easy"}
    json.dumps(result, allow_nan=False)
    events = read_events(tmp_path / "events.jsonl").events
    progress = [e for e in events if e["type"] == "progress"]
    assert [(e["done"], e["total"]) for e in progress] == [(1, 2), (2, 2)]
    assert any(e["type"] == "log" and "tier" in e["msg"] for e in events)


def test_task_stops_when_cancelled(tmp_path: Path) -> None:
    spec = JobSpec.create("baseline", ["SPY", "MSFT"], params={"horizon": 1})
    writer = EventWriter(tmp_path / "events.jsonl", spec.id)
    ctx = TaskContext(job_id=spec.id, workspace=tmp_path, job_dir=tmp_path, events=writer, data_dirs=[SHIPPED])
    ctx.cancel_event.set()
    try:
        result = baseline.run(spec, ctx)
    finally:
        writer.close()
    assert result["baselines"] == [] and result["summary"]["cancelled"] is True


def test_worker_subprocess_runs_a_baseline_job(tmp_path: Path) -> None:
    """The real `python -m engine.worker` path: spec.json in, a result event with the rows out."""
    import os
    import subprocess
    import sys

    spec = JobSpec.create("baseline", ["QQQ"], params={"horizon": [16], "span": "val"})
    job_dir = tmp_path / "ws" / "jobs" / spec.id
    job_dir.mkdir(parents=True)
    spec.write(job_dir)
    env = {**os.environ, paths.ENV_DATA: str(SHIPPED), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "engine.worker", str(job_dir)], env=env, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    events = read_events(job_dir / "events.jsonl").events
    result = next(e for e in events if e["type"] == "result")
    assert {(r["symbol"], r["horizon"], r["span"]) for r in result["baselines"]} == {("QQQ", 16, "val")}
    assert len(result["baselines"]) == 3 and result["summary"]["errors"] == 0
