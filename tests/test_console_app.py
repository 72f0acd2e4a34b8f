"""Pilot tests of the console on the real engine, store and workers (tiny presets, tmp workspace).

Flows: pick two stocks → baseline → rows appear; train → loss points arrive → cancel; promote a
comparison winner → hyperparams JSON written; bad form input → inline error, nothing queued.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Static

from console.app import ForecastConsoleApp
from console.services import ConsoleServices
from console.widgets.table import Cell, KeyedTable, num
from engine.gpu import FakeGpuSource
from engine.paths import PROJECT_ROOT
from tests.helpers import notices, outcome, wait_for

SYMBOLS = ("AAPL", "SPY", "TSLA")


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A tmp data folder with three shipped CSVs, a tmp workspace and hyperparams folder."""
    data = tmp_path / "data"
    data.mkdir()
    for s in SYMBOLS:
        shutil.copy(PROJECT_ROOT / "trainingdata" / f"{s}.csv", data / f"{s}.csv")
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    monkeypatch.setenv("FORECAST_DATA", str(data))
    monkeypatch.setenv("FORECAST_WORKSPACE", str(ws))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(hp))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"data": data, "ws": ws, "hp": hp}


def make_app(env: dict[str, Path], **kw: Any) -> ForecastConsoleApp:
    svc = ConsoleServices(env["ws"], hyperparams_dir=env["hp"], gpu_source=FakeGpuSource(1, 24.0),
                          engine_kwargs={"poll_interval": 0.05})
    return ForecastConsoleApp(svc, telemetry_interval=None, **kw)


def render_text(renderable: Any) -> str:
    from rich.console import Console

    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def test_console_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from console.app import ForecastConsoleApp\n"
        "from console.services import ConsoleServices\n"
        "app = ForecastConsoleApp(ConsoleServices('/tmp/fc-notorch-ws'))\n"
        "import console.screens.start_run, console.widgets.loss_chart\n"
        "print('torch' in sys.modules, 'tinydb' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split()[0] == "False", out.stdout


async def test_baseline_flow_rows_appear(env: dict[str, Path]) -> None:
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        stocks = app.screen
        await wait_for(lambda: stocks.table.row_count == 3, 5, "stock rows", pilot=pilot)
        assert stocks.table.row_ids == ["AAPL", "SPY", "TSLA"]
        assert stocks.table.raw("AAPL", "naive") is None  # no baseline yet
        await pilot.press("space", "space")  # AAPL, then the cursor moved to SPY
        assert stocks.selected == {"AAPL", "SPY"}
        await pilot.press("b")
        await pilot.pause()
        jobs = app.services.jobs()
        assert len(jobs) == 1 and jobs[0].kind == "baseline" and jobs[0].symbols == ("AAPL", "SPY")
        await wait_for(lambda: app.services.jobs()[0].state in ("succeeded", "failed"), 15, "baseline job", pilot=pilot)
        assert app.services.jobs()[0].state == "succeeded", app.services.jobs()[0].reason
        # the Stocks screen re-reads the store when the job finishes: tier and naive MAE% appear
        await wait_for(lambda: stocks.table.raw("SPY", "naive") is not None, 5, "baseline numbers", pilot=pilot)
        assert stocks.table.raw("TSLA", "naive") is None  # not selected, not run
        spy = next(b for b in app.services.store.baselines() if b.symbol == "SPY" and b.tier_windows)
        assert str(stocks.table.row_cells("SPY")["naive"].text) == f"{spy.tier_mae_pct:.3f} {spy.tier_windows}w"
        assert stocks.table.raw("AAPL", "tier") in ("easy", "medium", "hard", "extreme")
        await pilot.press("2")
        queue = app.screen
        assert queue.table.row_count == 1
        assert queue.table.raw(jobs[0].id, "state") == "succeeded"


async def test_form_rejects_bad_input_inline(env: dict[str, Path]) -> None:
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        stocks = app.screen
        await wait_for(lambda: stocks.table.row_count == len(SYMBOLS), 5, "stock rows", pilot=pilot)
        await pilot.press("r")
        await pilot.pause()
        assert any("select symbols" in n.message for n in app._notifications)
        await pilot.press("space", "r")
        await pilot.pause()
        form = app.screen
        assert type(form).__name__ == "StartRunScreen"
        form.query_one("#run-horizon").value = "abc"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "horizon must be a whole number" in str(form.query_one("#run-error").render())
        form.query_one("#run-horizon").value = "0"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "'horizon' must be greater than or equal to 1" in str(form.query_one("#run-error").render())
        assert app.screen is form and app.services.jobs() == []
        # the planner's settings for the selected symbol are shown
        assert "AAPL: " in str(form.query_one("#run-plan").render()) and "ctx " in str(form.query_one("#run-plan").render())


@pytest.mark.slow
async def test_train_loss_points_arrive_then_cancel(env: dict[str, Path]) -> None:
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        stocks = app.screen
        await wait_for(lambda: stocks.table.row_count == len(SYMBOLS), 5, "stock rows", pilot=pilot)
        await pilot.press("space", "r")
        await pilot.pause()
        form = app.screen
        form.query_one("#run-kind").value = "train"
        form.query_one("#run-model").value = "toto"
        await wait_for(lambda: bool(form.query("#run-epochs")), 5, "train fields", pilot=pilot)  # rebuilt for the kind
        form.query_one("#run-epochs").value = "200"
        form.query_one("#run-context").value = "64"
        form.query_one("#run-horizon").value = "16"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        (job,) = app.services.jobs()
        assert job.kind == "train" and job.model == "toto" and job.symbols == ("AAPL",)
        app.open_live(job.id)
        await pilot.pause()
        live = app.screen
        assert type(live).__name__ == "LiveScreen" and live.job_id == job.id
        chart = live.query_one("LossChart")
        # the worker imports torch and builds the tiny model first: allow for a loaded 2-core machine
        await wait_for(lambda: chart.n_points >= 1 or app.services.job(job.id).state == "failed",
                       40, "loss points", pilot=pilot)
        assert app.services.job(job.id).state == "running", app.services.job(job.id).reason
        await pilot.press("c")  # a running job: the console asks first
        await wait_for(lambda: type(app.screen).__name__ == "ConfirmScreen", 5, "the cancel question", pilot=pilot)
        assert app.services.job(job.id).state == "running"
        await pilot.press("y")
        await wait_for(lambda: app.services.job(job.id).state != "running", 15, "cancel", pilot=pilot)
        assert app.services.job(job.id).state == "cancelled"


def _seed_pick_and_comparison(ws: Path, hp: Path) -> None:
    from store import Store

    st = Store.open(ws, hyperparams_dir=hp)
    try:
        st.set_pick("toto", "SPY", {"config": {"num_samples": 128, "aggregation": "mean"},
                                     "selection_metric": "mae_pct", "horizon": 64,
                                     "validation": {"mae_pct": 1.5}, "test": {"mae_pct": 1.7}})
        cfg = {"num_samples": 256, "aggregation": "median"}
        st.put_comparisons([
            {"symbol": "SPY", "horizon": 16, "model": "toto", "config": cfg, "source": "pick", "winner": True,
             "validation": {"mae_pct": 1.6, "dm_stat": -0.5, "dm_p_two_sided": 0.6},
             "test": {"mae_pct": 2.5, "dm_stat": 2.0, "dm_p_two_sided": 0.01},
             "windows": {"span": "test", "count": 40, "stride": 1, "rows_covered": 55},
             "val_windows": {"span": "val", "count": 40, "stride": 1, "rows_covered": 55}},
            {"symbol": "SPY", "horizon": 16, "model": "naive", "config": {"method": "persistence"},
             "winner": False, "validation": {"mae_pct": 1.7}, "test": {"mae_pct": 2.1}},
        ])
    finally:
        st.close()


async def test_promote_comparison_winner_writes_json(env: dict[str, Path]) -> None:
    _seed_pick_and_comparison(env["ws"], env["hp"])
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("4")
        compare = app.screen
        await wait_for(lambda: compare.table.row_count == 2, 5, "comparison rows", pilot=pilot)
        compare.table.sort_by("val")
        assert compare.table.row_ids[0] == "SPY|16|toto|tiny"
        assert compare.table.raw("SPY|16|toto|tiny", "win") is True
        compare.table.move_cursor(row=0)
        await pilot.press("p")
        await wait_for(lambda: type(app.screen).__name__ == "ConfirmScreen", 5, "confirm modal", pilot=pilot)
        body = render_text(app.screen.body)
        assert "nothing promoted yet" in body and "num_samples" in body and "at h=16" in body
        assert "1.600 val 40w" in body and "2.500 test 40w" in body
        naive = next(line for line in body.splitlines() if "naive val/test MAE%" in line)
        assert naive.count("val 40w") == 1 and naive.count("test 40w") == 1  # naive's numbers say their windows
        # the warnings are their own lines outside the scrolling body: on screen, not below the fold
        warning = app.screen.query_one("#confirm-warning", Static)
        # the dialog is the screen as soon as it is pushed; its layout comes with a later refresh
        await wait_for(lambda: warning.region.height > 0, 10, "the dialog's layout", pilot=pilot)
        text = render_text(warning.render())
        assert "loses to naive on test" in text and "not significantly better than naive on validation" in text
        assert "loses to naive" not in body
        assert warning.region.height >= 2 and app.screen.region.contains_region(warning.region)
        assert str(app.screen.query_one("#confirm-ok", Button).label) == "Promote anyway"
        await pilot.press("enter")
        path = env["hp"] / "toto" / "SPY.json"
        # the flow ends in one notification either way ("promoted" once the engine service wrote the file, or
        # "promotion failed" with why): wait for that outcome, not for the file within some seconds
        await wait_for(lambda: outcome(app, "promoted", "promotion failed"), 30, "the promotion's outcome",
                       pilot=pilot, detail=lambda: str(notices(app)))
        assert outcome(app, "promoted", "promotion failed") == "promoted", notices(app)
        assert path.is_file()
        content = json.loads(path.read_text())
        assert content["symbol"] == "SPY" and content["model"] == "toto" and content["horizon"] == 16
        # exactly the highlighted row, not the (later, h=64) pick
        assert content["config"] == {"num_samples": 256, "aggregation": "median"}
        # configs screen lists the promotion; rollback removes the file again
        await pilot.press("6")
        configs = app.screen
        promos = configs.query_one("#promos-table", KeyedTable)
        await wait_for(lambda: promos.row_count == 1, 5, "promotion history", pilot=pilot)
        await pilot.press("b")
        await wait_for(lambda: type(app.screen).__name__ == "ConfirmScreen", 5, "rollback modal", pilot=pilot)
        await pilot.press("enter")
        await wait_for(lambda: outcome(app, "rolled back", "rollback failed"), 30, "the rollback's outcome",
                       pilot=pilot, detail=lambda: str(notices(app)))
        assert outcome(app, "rolled back", "rollback failed") == "rolled back", notices(app)
        assert not path.exists()


async def test_readonly_when_store_locked(env: dict[str, Path]) -> None:
    from store import Store

    holder = Store.open(env["ws"], hyperparams_dir=env["hp"])
    try:
        app = make_app(env)
        async with app.run_test(size=(100, 30)) as pilot:
            await asyncio.wait_for(app.ready.wait(), 10)
            assert app.services.readonly_reason
            assert "READ-ONLY" in app.sub_title
            stocks = app.screen
            await wait_for(lambda: stocks.table.row_count == len(SYMBOLS), 5, "stock rows", pilot=pilot)
            await pilot.press("space", "b")
            await pilot.pause()
            said = [n.message for n in app._notifications if "cannot manage jobs" in n.message]
            assert said and "console is read-only" in said[0]
            assert not any("open this one read-only" in n.message for n in app._notifications)  # it already is
    finally:
        holder.close()


async def test_keyed_table_numeric_sort_and_minimal_writes() -> None:
    from textual.app import App, ComposeResult

    class T(App):
        def compose(self) -> ComposeResult:
            yield KeyedTable([("name", "Name"), ("v", "Value")])

    async with T().run_test() as pilot:
        table = pilot.app.query_one(KeyedTable)
        rows = {"a": {"name": Cell("a", "a"), "v": num(10.0)}, "b": {"name": Cell("b", "b"), "v": num(9.0)},
                "c": {"name": Cell("c", "c"), "v": num(None)}}
        assert table.sync(rows) == 3
        table.sort_by("v")
        assert table.row_ids == ["b", "a", "c"]  # numeric (9 < 10), None last; not "10.00" < "9.00"
        assert table.sync(rows) == 0  # nothing changed → no writes
        rows["c"] = {"name": Cell("c", "c"), "v": num(1.0)}
        assert table.sync(rows) == 1
        assert table.row_ids == ["c", "b", "a"]
        del rows["a"]
        table.sync(rows)
        assert table.row_ids == ["c", "b"]
