"""Keys typed in one burst right after a key that changes the screen reach the new screen.

Pilot's `press` waits for the app to go idle after every key, so it never shows this: a person
typing `8/toto⏎` fast sends all of it before the console has switched to Runs. `burst` posts the
keys to the app the way the terminal driver does (all of them before the app handles the first),
then the test waits for the outcome on the new screen and checks that the old one saw none of it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from console import key_handover
from console.screens.filter_keys import FilterScreen
from console.screens.forecast_view import ForecastScreen
from console.screens.start_run import StartRunScreen
from console.widgets.nav import NAV_ITEMS
from engine.paths import PROJECT_ROOT
from tests.helpers import wait_for
from tests.runs_fixture import offline_app, seed_forecast_workspace, seed_forecasts, until

#: Key name and character of the keys these tests type that are not a letter or digit (as the driver
#: reports them); other names (arrows) carry no character.
NAMED = {"/": ("slash", "/"), "?": ("question_mark", "?"), "space": ("space", " "), "enter": ("enter", "\r"),
         "escape": ("escape", "\x1b"), "tab": ("tab", "\t"), "backspace": ("backspace", "\x7f")}


def key_event(key: str) -> events.Key:
    """The Key event the terminal driver makes for `key` (a letter, a digit or a key name)."""
    name, char = NAMED.get(key, (key, key if len(key) == 1 else None))
    return events.Key(name, char)


def burst(app: Any, *keys: str) -> None:
    """Post `keys` to the app as the driver does, without waiting between them (a fast typist)."""
    for key in keys:
        app.post_message(key_event(key))


@pytest.fixture(scope="module")
def forecast_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_forecasts(tmp_path_factory.mktemp("fc") / "ws", PROJECT_ROOT / "trainingdata")


@pytest.fixture()
def ws(tmp_path: Path, forecast_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two shipped stocks, the runs fixture's runs and pick, and the validate job's forecasts."""
    data = tmp_path / "data"
    data.mkdir()
    for s in ("AAPL", "SPY"):
        shutil.copy(PROJECT_ROOT / "trainingdata" / f"{s}.csv", data / f"{s}.csv")
    monkeypatch.setenv("FORECAST_DATA", str(data))
    return seed_forecast_workspace(tmp_path / "ws", tmp_path / "hp", forecast_file, monkeypatch)


def filter_of(app: Any, mode: str) -> str:
    scr = app.get_screen_for_mode(mode)
    assert isinstance(scr, FilterScreen)
    return scr.filter_input.value


async def settled(pilot: Any) -> None:
    await pilot.pause()
    await pilot.pause()


async def test_nav_key_then_filter_typing_reaches_the_new_screen_from_every_screen(ws: dict[str, Any]) -> None:
    app = offline_app(ws["ws"], ws["hp"])
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await until(pilot, lambda: app.screen.table.row_count == 2, "the stock rows")
        burst(app, "8", "/", *"toto", "enter")
        await until(pilot, lambda: app.current_mode == "runs" and filter_of(app, "runs") == "toto",
                    "Runs filtered by what was typed after 8")
        await settled(pilot)
        assert filter_of(app, "stocks") == ""

        # One burst: go to every screen (each nav key, and g), from it to Stocks or Runs (in turn), and
        # add a letter to that screen's filter. A screen met for the first time composes in the
        # middle of the burst. Each filter ends up with exactly its own letters in the order typed:
        # none went to the screen being left, none was lost or doubled. (The letters are bound on
        # no screen, so a stray one changes nothing else.)
        letters = iter("dijkuvzDIJ")
        keys: list[str] = []
        want = {"stocks": "", "runs": "toto"}
        for i, (_mode, key, _) in enumerate([*NAV_ITEMS, ("gpu", "g", "GPU")]):
            dest, dest_key = (("stocks", "1"), ("runs", "8"))[i % 2]
            letter = next(letters)
            keys += [key, dest_key, "/", letter, "enter"]
            want[dest] += letter
        burst(app, *keys, "1")
        await until(pilot, lambda: {m: filter_of(app, m) for m in want} == want and app.current_mode == "stocks",
                    f"the filters {want}", timeout=30)
        await settled(pilot)
        assert {m: filter_of(app, m) for m in want} == want
        assert app._key_handover.holding == 0


async def test_run_form_gets_what_is_typed_after_r(ws: dict[str, Any]) -> None:
    app = offline_app(ws["ws"], ws["hp"])
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        stocks = app.screen
        await until(pilot, lambda: stocks.table.row_count == 2, "the stock rows")
        burst(app, "space", "r", "tab", "backspace", *"17")
        await until(pilot, lambda: isinstance(app.screen, StartRunScreen), "the run form")
        form = app.screen
        await until(pilot, lambda: form.query_one("#run-priority", Input).value == "17",
                    "the priority typed after r", timeout=5)
        assert stocks.filter_input.value == ""


async def test_forecast_view_gets_the_keys_typed_after_f(ws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """`f t ← ←` on Runs: the view opens, and its keys apply even though its forecasts are still being
    read when they arrive (the read is held until the keys have been handled)."""
    from console.screens import forecast_view

    read = threading.Event()
    find = forecast_view.find_forecasts
    monkeypatch.setattr(forecast_view, "find_forecasts", lambda *a: read.wait(10) and find(*a))
    app = offline_app(ws["ws"], ws["hp"])
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("8")
        runs = app.screen
        await until(pilot, lambda: runs.table.row_count == 2, "the runs")
        burst(app, "f", "t", "left", "left")
        await until(pilot, lambda: isinstance(app.screen, ForecastScreen) and not app._key_handover.holding,
                    "the forecast view, every key sent to it")
        await settled(pilot)
        scr = app.screen
        assert scr.forecasts is None  # still reading
        read.set()
        await until(pilot, lambda: "validation window 10/12" in str(scr.query_one("#fv-title").render()),
                    "the val span, two windows back", timeout=5)


async def test_keys_panel_and_digits_typed_into_the_filter(ws: dict[str, Any]) -> None:
    app = offline_app(ws["ws"], ws["hp"])
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await until(pilot, lambda: app.screen.table.row_count == 2, "the stock rows")
        # `?` on Runs right after 8, then a filter with a digit in it: text, not the Stocks key
        burst(app, "8", "?", "/", "a", "1", "enter")
        await until(pilot, lambda: app.current_mode == "runs" and filter_of(app, "runs") == "a1",
                    "Runs filtered by 'a1'")
        await settled(pilot)
        assert app.screen.query("HelpPanel") and filter_of(app, "stocks") == ""
        burst(app, "?", "1", "?")  # closed on Runs, opened on Stocks
        await until(pilot, lambda: app.current_mode == "stocks" and app.screen.query("HelpPanel"), "keys on Stocks")
        await settled(pilot)
        assert not app.get_screen_for_mode("runs").query("HelpPanel")


class Stuck(Static, can_focus=True):
    """A widget whose handler of `b` waits until the test lets it go (a handler stuck on something)."""

    def __init__(self) -> None:
        super().__init__("stuck")
        self.go = asyncio.Event()

    async def on_key(self, event: events.Key) -> None:
        if event.key == "b":
            await self.go.wait()


class StuckApp(App[None]):
    BINDINGS = [Binding("ctrl+x", "mark", priority=True)]  # noqa: RUF012 - Textual's class attribute
    marked = False

    def __init__(self) -> None:
        super().__init__()
        self._keys = key_handover.KeyHandover(self, super().on_event)

    async def on_event(self, event: events.Event) -> None:
        if not await self._keys.take(event):
            await super().on_event(event)

    def compose(self) -> ComposeResult:
        yield Stuck()

    def action_mark(self) -> None:
        self.marked = True


async def test_a_stuck_handler_holds_the_keys_behind_it_only_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(key_handover, "STALL_S", 0.05)
    monkeypatch.setattr(key_handover, "TICK_S", 0.01)
    app = StuckApp()
    async with app.run_test() as pilot:
        stuck = app.query_one(Stuck)
        stuck.focus()
        await pilot.pause()
        burst(app, "b", "ctrl+x")
        try:  # not through the pilot: its pause waits for every widget, the stuck one too
            await wait_for(lambda: app.marked, 5, "the priority key sent on after the stall")
        finally:
            stuck.go.set()
        assert app._keys.holding == 0
