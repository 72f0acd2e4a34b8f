"""Snapshot tests of every console screen with fixed data: a seeded tmp store, a FakeGpuSource,
fixed job records and event files, a pinned workspace label, UTC, no telemetry re-polling and
no cursor blink (Textual turns blink off under run_test). Update with `--snapshot-update`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from console.app import ForecastConsoleApp
from console.services import ConsoleServices
from engine.gpu import FakeGpuSource
from engine.jobs import JobSpec
from engine.paths import PROJECT_ROOT

SYMBOLS = ("AAPL", "COIN", "MSFT", "SPY", "UNIUSD")
T0 = 1_750_000_000.0  # fixed "now" of the seeded records (2025-06-15 15:06:40 UTC)
TRAIN_ID = "20250615-150640-000-train-0000aaaa"
FAILED_ID = "20250615-150700-000-validate-0000bbbb"
BASE_ID = "20250615-150600-000-baseline-0000cccc"
TWO_ID = "20250615-150800-000-train-0000dddd"  # two symbols in one job (seed_two_symbol_job)


@pytest.fixture()
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    data, ws, hp = tmp_path / "data", tmp_path / "ws", tmp_path / "hp"
    data.mkdir()
    for s in SYMBOLS:
        shutil.copy(PROJECT_ROOT / "trainingdata" / f"{s}.csv", data / f"{s}.csv")
    for k, v in {"FORECAST_DATA": data, "FORECAST_WORKSPACE": ws, "FORECAST_HYPERPARAMS": hp}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    _seed_store(ws, hp)
    return {"data": data, "ws": ws, "hp": hp}


def _job_rec(jid: str, kind: str, symbols: list[str], model: str | None, state: str, created: float,
             **extra: Any) -> dict[str, Any]:
    spec = JobSpec(id=jid, kind=kind, symbols=tuple(symbols), model=model, params={"preset": "tiny"},
                   created_at=created)
    rec = {"id": jid, "kind": kind, "symbols": symbols, "model": model, "state": state, "priority": 0,
           "attempt": 1, "created_at": created, "spec": spec.to_dict(), "device": "cpu"}
    rec.update(extra)
    return rec


def _seed_store(ws: Path, hp: Path) -> None:
    from store import Store

    tiers = {"AAPL": ("easy", 6.62), "COIN": ("hard", 24.1), "MSFT": ("easy", 5.9), "SPY": ("easy", 4.4),
             "UNIUSD": ("extreme", 68.0)}
    st = Store.open(ws, hyperparams_dir=hp)
    try:
        st.put_baselines([
            {"symbol": s, "model": "naive_persistence", "horizon": 64, "span": "test", "tier": t,
             "tier_mae_pct": m, "tier_windows": 1247, "tier_horizon": 64, "metrics": {"mae_pct": m}}
            for s, (t, m) in tiers.items()
        ])
        w = {"val_windows": {"span": "val", "count": 311, "stride": 1, "rows_covered": 374},
             "test_windows": {"span": "test", "count": 311, "stride": 1, "rows_covered": 374}}
        st.set_pick("toto", "SPY", {"config": {"num_samples": 256, "aggregation": "median", "context": 512},
                                     "selection_metric": "mae_pct", "horizon": 64, **w,
                                     "validation": {"mae_pct": 3.91}, "test": {"mae_pct": 4.05}})
        st.set_pick("kronos", "SPY", {"config": {"temperature": 0.7, "top_p": 0.9},
                                       "selection_metric": "mae_pct", "horizon": 64, **w,
                                       "validation": {"mae_pct": 4.2}, "test": {"mae_pct": 4.4}})
        st.set_pick("toto", "COIN", {"config": {"num_samples": 512, "aggregation": "trimmed_mean_10"},
                                      "selection_metric": "mae_pct", "horizon": 64, **w,
                                      "validation": {"mae_pct": 21.3}, "test": {"mae_pct": 23.0}})
        cw = {"windows": w["test_windows"], "val_windows": w["val_windows"]}

        def row(sym: str, model: str, val: float, test: float, mase: float, cov: float, stat: float | None,
                p: float | None, impr: float, win: bool) -> dict:
            return {"symbol": sym, "horizon": 64, "model": model, "winner": win, **cw,
                    "validation": {"mae_pct": val},
                    "test": {"mae_pct": test, "mase": mase, "coverage80": cov, "dm_stat": stat, "dm_p_two_sided": p},
                    "improvement_vs_naive_pct": impr}

        st.put_comparisons([
            row("SPY", "toto", 3.91, 4.05, 0.97, 0.78, -2.6, 0.012, 8.0, True),
            row("SPY", "kronos", 4.2, 4.4, 1.02, 0.74, -1.3, 0.21, 0.1, False),
            row("SPY", "naive", 4.3, 4.4, 1.0, 0.0, None, None, 0.0, False),
            row("COIN", "toto", 21.3, 23.0, 1.1, 0.69, 5.1, 3.5e-05, -4.6, False),
            row("COIN", "naive", 21.0, 22.0, 1.0, 0.0, None, None, 0.0, True),
        ])
        st.put_job(_job_rec(BASE_ID, "baseline", ["AAPL", "SPY"], None, "succeeded", T0 - 40,
                            progress_done=2, progress_total=2, finished_at=T0 - 30))
        st.put_job(_job_rec(TRAIN_ID, "train", ["SPY"], "toto", "succeeded", T0,
                            progress_done=40, progress_total=40, last_train_loss=0.412, last_val_loss=0.455))
        st.put_job(_job_rec(FAILED_ID, "validate", ["COIN"], "kronos", "failed", T0 + 20,
                            reason="ModelLoadError: kronos weights not in the HF cache; run "
                                   "`forecast-console models fetch kronos`"))
    finally:
        st.close()
    job_dir = ws / "jobs" / TRAIN_ID
    job_dir.mkdir(parents=True, exist_ok=True)
    events = [{"job": TRAIN_ID, "t": T0 + 1, "type": "started", "pid": 4242}]
    for step in range(1, 41):
        ev = {"job": TRAIN_ID, "t": T0 + 1 + step, "type": "loss", "step": step, "epoch": (step - 1) // 10,
              "train": round(1.0 / (1 + 0.1 * step), 4)}
        if step % 10 == 0:
            ev["val"] = round(1.1 / (1 + 0.08 * step), 4)
        events.append(ev)
    for i, msg in enumerate(["loaded toto tiny (random init)", "plan: context 512, horizon 64, lr 0.0003",
                             "epoch 4: train 0.2000 val 0.2657", "saved adapter"]):
        events.append({"job": TRAIN_ID, "t": T0 + 50 + i, "type": "log", "level": "info", "msg": msg})
    (job_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    from engine.tasks.regression import proposed_jobs

    st = Store.open(ws, hyperparams_dir=hp)
    try:  # rows in the regression task's format, as the engine records them
        st.put_regressions([
            {"symbol": "COIN", "model": "toto", "horizon": 64, "metric": "mae_pct", "span": "test",
             "current": 23.0, "previous": 20.1, "baseline": 22.0, "delta_vs_previous_pct": 14.4,
             "delta_vs_baseline_pct": 4.5, "worse_than_previous": True, "worse_than_baseline": False,
             "flagged": True, "threshold_pct": 5.0, "reason": "mae_pct 14.4% worse than the previous pick",
             "windows": 311, "job_id": "20261122-000000-000-regression-00000000",
             "proposed_jobs": proposed_jobs("toto", "COIN", preset="tiny", horizon=64, context=128,
                                            reason="mae_pct 14.4% worse than the previous pick")},
            {"symbol": "SPY", "model": "toto", "horizon": 64, "metric": "mae_pct", "span": "test",
             "current": 4.05, "previous": 4.2, "baseline": 4.4, "delta_vs_previous_pct": -3.6,
             "delta_vs_baseline_pct": -8.0, "worse_than_previous": False, "worse_than_baseline": False,
             "flagged": False, "threshold_pct": 5.0, "reason": "ok", "windows": 311, "proposed_jobs": []},
        ])
    finally:
        st.close()


def seed_two_symbol_job(ws: Path) -> None:
    """A chronos2 train job over SPY then AAPL, as its worker writes it: each symbol's loss points name
    their symbol and run and start at step 1; SPY's validation loss rises in its last epoch (its kept,
    best epoch is the second) and it stopped early; the job ended while scoring AAPL's validation."""
    from store import Store

    st = Store.open(ws)
    try:
        st.put_job(_job_rec(TWO_ID, "train", ["SPY", "AAPL"], "chronos2", "succeeded", T0 + 60,
                            progress_done=2, progress_total=2, stage="scoring validation", symbol="AAPL",
                            symbol_i=2, symbol_n=2, epoch_i=3, epoch_n=3, last_train_loss=0.31, last_val_loss=0.48,
                            metrics={"SPY.stopped_early": 1.0, "SPY.best_epoch": 1.0, "AAPL.stopped_early": 0.0}))
    finally:
        st.close()
    job_dir = ws / "jobs" / TWO_ID
    job_dir.mkdir(parents=True, exist_ok=True)
    t = T0 + 61
    events: list[dict[str, Any]] = [{"job": TWO_ID, "t": t, "type": "started", "pid": 4343}]
    for i, (sym, vals, scale) in enumerate((("SPY", (0.5, 0.42, 0.45), 1.0), ("AAPL", (0.6, 0.5, 0.48), 1.3))):
        run = f"chronos2-tiny-{sym}-0000{i}"
        for step in range(1, 31):
            t += 1
            ev = {"job": TWO_ID, "t": t, "type": "loss", "step": step, "epoch": (step - 1) // 10, "symbol": sym,
                  "run": run, "train": round(scale * (0.3 + 0.5 / step + 0.02 * (step % 3)), 4)}
            if step % 10 == 0:
                ev["val"] = vals[step // 10 - 1]
            events.append(ev)
        events.append({"job": TWO_ID, "t": t, "type": "progress", "done": i + 1, "total": 2,
                       "stage": "scoring validation", "symbol": sym, "symbol_i": i + 1, "symbol_n": 2,
                       "epoch_i": 3, "epoch_n": 3})
    (job_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def make_app(paths: dict[str, Path], start_engine: bool = True) -> ForecastConsoleApp:
    """start_engine=False for screens that only read the store (no service start to wait on or time out)."""
    svc = ConsoleServices(paths["ws"], hyperparams_dir=paths["hp"], gpu_source=FakeGpuSource(1, 24.0),
                          engine_kwargs={"poll_interval": 0.05})
    return ForecastConsoleApp(svc, telemetry_interval=None, workspace_label="/ws/demo", start_engine=start_engine)


def settle(*keys: str, then: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """run_before: wait for startup and the first data loads, press keys, let workers finish."""

    async def run(pilot: Any) -> None:
        app = pilot.app
        await asyncio.wait_for(app.ready.wait(), 10)
        # Keys like "p" act on the stock rows: wait until they are on screen, not a fixed sleep
        # (a loaded machine loads them later than any fixed pause).
        deadline = asyncio.get_running_loop().time() + 10
        table = getattr(app.screen, "table", None)
        while table is not None and table.row_count == 0:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("stock rows never appeared")
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        for k in keys:
            await pilot.press(k)
            await pilot.pause(0.2)
        if then is not None:
            res = then(pilot)
            if asyncio.iscoroutine(res):
                await res
        await pilot.pause(0.6)  # chart redraw throttle (0.5 s) and the last repaint

    return run


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_stocks_screen(snap_compare: Any, seeded: dict[str, Path], size: tuple[int, int]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=size, run_before=settle("p"))


def test_start_run_form(snap_compare: Any, seeded: dict[str, Path]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=(120, 40), run_before=settle("p", "r"))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_queue_screen(snap_compare: Any, seeded: dict[str, Path], size: tuple[int, int]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=size, run_before=settle("2", "end"))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_live_screen(snap_compare: Any, seeded: dict[str, Path], size: tuple[int, int]) -> None:
    """A two-symbol train job: one curve pair per symbol, best-val and early-stop markers, one-line header."""
    seed_two_symbol_job(seeded["ws"])

    def open_train(pilot: Any) -> None:
        pilot.app.open_live(TWO_ID)

    assert snap_compare(make_app(seeded), terminal_size=size, run_before=settle(then=open_train))


def test_compare_screen(snap_compare: Any, seeded: dict[str, Path]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=(120, 40), run_before=settle("4", "s", "s", "s", "s"))


def test_promote_confirm_modal(snap_compare: Any, seeded: dict[str, Path]) -> None:
    async def promote_first(pilot: Any) -> None:
        await pilot.press("4")
        await pilot.pause(0.3)
        scr = pilot.app.screen
        scr.table.sort_by("val")
        scr.table.move_cursor(row=0)
        await pilot.press("p")
        await pilot.pause(0.5)

    assert snap_compare(make_app(seeded), terminal_size=(120, 40), run_before=settle(then=promote_first))


def test_regressions_screen(snap_compare: Any, seeded: dict[str, Path]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=(120, 40), run_before=settle("5"))


def test_configs_screen(snap_compare: Any, seeded: dict[str, Path]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=(120, 40), run_before=settle("6"))


def test_gpu_screen(snap_compare: Any, seeded: dict[str, Path]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=(80, 24), run_before=settle("7"))


def test_light_theme(snap_compare: Any, seeded: dict[str, Path]) -> None:
    assert snap_compare(make_app(seeded), terminal_size=(80, 24), run_before=settle("ctrl+t", "4"))


def test_regression_retrain_queues_jobs(seeded: dict[str, Path]) -> None:
    """A flagged row's proposed retrain → re-validate is queued as one pipeline job with the proposed
    params as its steps (checked on the engine, not the UI): the re-validate waits for the retrain."""

    async def run() -> None:
        app = make_app(seeded)
        async with app.run_test(size=(120, 40)) as pilot:
            await asyncio.wait_for(app.ready.wait(), 10)
            await pilot.press("5")
            await pilot.pause(0.5)
            before = {j.id for j in app.services.jobs()}
            await pilot.press("t")
            await pilot.pause()
            new = [j for j in app.services.jobs() if j.id not in before]
            assert [(j.kind, j.symbols, j.model) for j in new] == [("pipeline", ("COIN",), None)]
            params = {"preset": "tiny", "horizon": 64, "context": 128}
            assert app.services.engine.spec(new[0].id).params["steps"] == [
                {"kind": "train", "model": "toto", "params": params},
                {"kind": "validate", "model": "toto", "params": params}]
            app.services.cancel(new[0].id)

    asyncio.run(run())
    assert os.environ["TZ"] == "UTC"


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_runs_screen(snap_compare: Any, seeded: dict[str, Path], size: tuple[int, int]) -> None:
    from tests.runs_fixture import seed_runs

    seed_runs(seeded["ws"], seeded["hp"])

    async def detail_shown(pilot: Any) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while "used by" not in str(pilot.app.screen.query_one("#runs-detail-text").render()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the run detail never appeared")
            await pilot.pause(0.05)

    assert snap_compare(make_app(seeded, start_engine=False), terminal_size=size,
                        run_before=settle("8", then=detail_shown))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_forecast_view(snap_compare: Any, seeded: dict[str, Path], size: tuple[int, int]) -> None:
    from console.screens.forecast_view import ForecastRequested, ForecastScreen
    from tests.runs_fixture import VALIDATE_JOB, seed_forecasts, seed_runs

    seed_runs(seeded["ws"], seeded["hp"])
    seed_forecasts(seeded["ws"], seeded["data"])

    async def open_view(pilot: Any) -> None:
        pilot.app.push_screen(ForecastScreen(ForecastRequested("SPY", "toto", 16, "tiny", [VALIDATE_JOB])))
        deadline = asyncio.get_running_loop().time() + 10
        while not (isinstance(pilot.app.screen, ForecastScreen) and pilot.app.screen.forecasts is not None):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the forecast view never loaded")
            await pilot.pause(0.05)
        await pilot.press("left")

    assert snap_compare(make_app(seeded, start_engine=False), terminal_size=size, run_before=settle(then=open_view))
