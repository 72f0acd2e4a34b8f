"""Pilot tests of the Forecast view: opened from Compare, Configs and Runs on a real store and a
forecast file as validate keeps it; keys step through windows, switch span and model; a decision
whose job kept no forecasts says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from console.screens.forecast_view import ForecastScreen
from console.widgets.forecast_chart import ForecastChart
from engine.paths import PROJECT_ROOT
from tests.runs_fixture import VALIDATE_JOB, offline_app, seed_forecast_workspace, seed_forecasts, until


@pytest.fixture(scope="module")
def forecast_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One forecast file (the windows are built once for the module), copied into each workspace."""
    ws = tmp_path_factory.mktemp("fc") / "ws"
    return seed_forecasts(ws, PROJECT_ROOT / "trainingdata")


@pytest.fixture()
def ws(tmp_path: Path, forecast_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return seed_forecast_workspace(tmp_path / "ws", tmp_path / "hp", forecast_file, monkeypatch)


def make_app(p: dict[str, Any]) -> Any:
    return offline_app(p["ws"], p["hp"])


def title(app: Any) -> str:
    return str(app.screen.query_one("#fv-title").render())


async def test_from_configs_step_windows_span_and_model(ws: dict[str, Any]) -> None:
    app = make_app(ws)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("6")
        await until(pilot, lambda: app.screen.query_one("#picks-table").row_count == 1, "the pick")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ForecastScreen) and app.screen.forecasts is not None,
                    "the forecast view")
        scr = app.screen
        stride = scr.forecasts.meta.windows["test"].stride
        assert f"SPY · toto (pick) · h=16 · test window 12/12 (test 12w, stride {stride})" in title(app)
        info = str(scr.query_one("#fv-info").render())
        assert "vs naive (persistence)" in info and f"forecasts kept by job {VALIDATE_JOB} (validate)" in info
        chart = scr.query_one(ForecastChart)
        w = chart.shown
        assert w is not None and len(w.point) == 16 and w.offsets[0] == -48 and np.all(w.q10 <= w.q90)
        last_origin = w.origin_row
        await pilot.press("left")
        assert "test window 11/12" in title(app) and chart.shown.origin_row == last_origin - stride
        await pilot.press("home")
        assert "test window 1/12" in title(app)
        await pilot.press("left")  # stays on the first window
        assert "test window 1/12" in title(app)
        await pilot.press("t")
        assert "validation window 12/12 (val 12w" in title(app)
        assert chart.shown.origin_row < last_origin - 11 * stride  # validation windows come before the test span
        await pilot.press("m")
        assert "SPY · naive (selected on val)" in title(app)
        await pilot.press("escape")
        assert app.screen.__class__.__name__ == "ConfigsScreen"


async def test_from_runs_and_compare_and_a_job_without_forecasts(ws: dict[str, Any]) -> None:
    from store import Store

    st = Store.open(ws["ws"], hyperparams_dir=ws["hp"])
    try:  # a comparison row whose job kept no forecast file
        st.put_comparisons([{"symbol": "SPY", "horizon": 64, "model": "kronos", "winner": True,
                             "validation": {"mae_pct": 4.0}, "test": {"mae_pct": 4.1}}],
                           job_id="20250615-160000-000-compare-0000ffff")
    finally:
        st.close()
    app = make_app(ws)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        # the train run: its adapter's pick (made by the validate job) has the forecasts
        await pilot.press("8")
        await until(pilot, lambda: app.screen.table.row_count == 2, "the runs")
        app.screen.table.move_cursor(row=app.screen.table.get_row_index(ws["train"]))
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ForecastScreen) and app.screen.forecasts is not None,
                    "the forecast view from a run")
        assert "SPY · toto (pick) · h=16" in title(app)
        await pilot.press("escape")
        await pilot.press("4")
        await until(pilot, lambda: app.screen.table.row_count == 1, "the comparison row")
        await pilot.press("f")
        await until(pilot, lambda: isinstance(app.screen, ForecastScreen) and app.screen.note, "the note")
        assert app.screen.forecasts is None
        assert "No per-window forecasts of kronos for SPY at h=64" in str(app.screen.query_one("#fv-info").render())
