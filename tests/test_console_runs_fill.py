"""Pilot tests of the Runs screen while it opens: the newest runs first, the rest read and filled in
afterwards (status honest meanwhile, a sort and filter given meanwhile right once all are read), and
a filter typed fast right after `/` reaching the filter, not the table's keys."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.widgets import Input

from console.screens import runs as runs_screen
from console.screens.runs import RunsScreen
from tests.runs_fixture import offline_app, seed_runs, until


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    monkeypatch.setenv("FORECAST_WORKSPACE", str(ws))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(hp))
    return {"ws": ws, "hp": hp, **seed_runs(ws, hp, extra_runs=4)}  # 6 runs: 2 toto (oldest), 4 kronos


def status(scr: RunsScreen) -> str:
    return str(scr.query_one("#runs-status").render())


async def open_runs(app: Any, pilot: Any) -> RunsScreen:
    await asyncio.wait_for(app.ready.wait(), 10)
    await pilot.press("8")
    scr = app.screen
    assert isinstance(scr, RunsScreen)
    return scr


async def test_runs_open_newest_first_then_fill_with_sort_and_filter_given_meanwhile(
        ws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_screen, "FIRST_ROWS", 2)
    monkeypatch.setattr(runs_screen, "FILL_CHUNK", 1)
    monkeypatch.setattr(runs_screen, "FILL_STEP_S", 3600.0)  # the test takes the fill steps itself
    whole_list = threading.Event()
    read = runs_screen._read_runs

    def held_read(store: Any, newest: int | None = None) -> Any:
        if newest is None:  # the whole listing waits (on the I/O thread) until the test lets it go
            assert whole_list.wait(10)
        return read(store, newest)

    monkeypatch.setattr(runs_screen, "_read_runs", held_read)
    app = offline_app(ws["ws"], ws["hp"])
    async with app.run_test(size=(120, 40)) as pilot:
        scr = await open_runs(app, pilot)
        await until(pilot, lambda: scr.table.row_count == 1, "the newest run, drawn first")
        assert status(scr) == "1 of 6 runs · loading… · sorted by when ↓"
        scr._fill_step()
        newest = scr.table.row_ids
        assert [scr.by_id[r].model for r in newest] == ["kronos", "kronos"] and scr.filling
        assert status(scr) == "2 of 6 runs · loading… · sorted by when ↓"

        # sort by Val MAE% and filter while only the newest are read: applied to those two meanwhile
        scr._sort("val", False)
        await pilot.press("slash", *"toto", "enter")
        await until(pilot, lambda: scr.table.row_count == 0, "no toto run among the two read")
        assert status(scr) == "0 of 6 runs · loading… · sorted by val ↑"

        whole_list.set()  # now every run is read: the toto runs (the oldest) match, best first
        await until(pilot, lambda: scr.complete, "the whole list")
        assert scr.table.row_ids == [ws["validate"]] and scr.to_fill
        assert status(scr) == "2 of 6 runs · 1 shown · loading… · sorted by val ↑"
        scr._fill_step()
        assert scr.table.row_ids == [ws["validate"], ws["train"]] and not scr.filling
        assert status(scr) == "2 of 6 runs · sorted by val ↑"

        # the default order again over all six, filled one row a step
        await pilot.press("slash", *["backspace"] * 4, "enter")
        scr._sort("when", True)
        while scr.to_fill:
            scr._fill_step()
        assert scr.table.row_ids[:2] == newest and scr.table.row_ids[-2:] == [ws["validate"], ws["train"]]
        assert status(scr) == "6 of 6 runs · sorted by when ↓"


async def test_runs_filter_typed_fast_after_slash_reaches_the_filter(ws: dict[str, Any]) -> None:
    """Keys posted in one burst, as the terminal driver posts keys typed fast (Pilot's press waits
    for each key): `o` (order), `s` (sort) and `f` (Forecast) typed after `/` are filter text."""
    app = offline_app(ws["ws"], ws["hp"])
    chars = {"slash": "/", "space": " ", "enter": "\r", "backspace": "\x7f"}
    async with app.run_test(size=(120, 40)) as pilot:
        scr = await open_runs(app, pilot)
        await until(pilot, lambda: scr.table.row_count == 6, "the runs")
        typed = scr.query_one("#runs-filter", Input)
        for k in ["slash", *"kronos", "space", *"of"]:
            app.post_message(events.Key(k, chars.get(k, k)))
        await until(pilot, lambda: typed.value == "kronos of", "the typed filter", 3)
        await until(pilot, lambda: scr.table.row_count == 0, "no run matching 'of'")
        assert app.screen is scr and (scr.sort_column, scr.sort_reverse) == ("when", True)
        for k in ["backspace"] * 3 + ["enter"]:
            app.post_message(events.Key(k, chars.get(k, k)))
        await until(pilot, lambda: typed.value == "kronos" and scr.table.row_count == 4, "the four kronos runs")
        assert {scr.by_id[r].model for r in scr.table.row_ids} == {"kronos"}
        assert app.screen is scr and (scr.sort_column, scr.sort_reverse) == ("when", True)
