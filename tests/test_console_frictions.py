"""Frictions a new user met in the console, each driven through the real app (Pilot) on the shipped
data, without an engine service (none of these needs one): the start-run form (hidden model field,
Tab order, impossible horizons refused before queueing, "tier unknown", the kind kept), the keys
panel closing with `?`/Esc, and the theme kept between runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import HelpPanel, Input, Select, Static

from console.app import ForecastConsoleApp
from console.screens.start_run import StartRunScreen
from console.services import ConsoleServices
from tests.helpers import wait_for
from tests.test_console_app import env  # noqa: F401


def _app(env: dict[str, Path]) -> ForecastConsoleApp:  # noqa: F811
    svc = ConsoleServices(env["ws"], hyperparams_dir=env["hp"])
    return ForecastConsoleApp(svc, telemetry_interval=None, start_engine=False)


async def _open_form(app: ForecastConsoleApp, pilot: object, symbols: list[str]) -> StartRunScreen:
    stocks = app.get_screen_for_mode("stocks")
    await wait_for(lambda: getattr(stocks, "loaded", False), 20, "the stocks rows", pilot=pilot)
    stocks.action_preset("none")  # type: ignore[union-attr]
    for s in symbols:
        stocks.toggle(s)  # type: ignore[union-attr]
    await wait_for(lambda: app.selected_symbols == sorted(symbols), 5, "the selection told to the app", pilot=pilot)
    app.action_start_run()
    await wait_for(lambda: isinstance(app.screen, StartRunScreen) and app.screen.query("#run-plan"), 10,
                   "the form", pilot=pilot)
    return app.screen


async def test_form_fields_tab_order_horizon_check_tier_unknown_and_kind_kept(env: dict[str, Path]) -> None:  # noqa: F811
    app = _app(env)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 20)
        form = await _open_form(app, pilot, ["AAPL", "SPY"])
        # baseline takes no model: the select is not shown (a disabled select looked editable)
        assert not form.query_one("#run-model", Select).display
        assert "naive baselines only" in str(form.query_one("#run-model-note", Static).content)
        # Tab goes kind → priority → the first parameter: no invisible stop takes the keys
        await pilot.press("tab")
        assert app.focused is form.query_one("#run-priority", Input)
        await pilot.press("backspace", "7")
        await pilot.press("tab")
        assert app.focused is form.query_one("#run-horizon", Input)
        await pilot.press(*"100000")
        await pilot.press("ctrl+s")
        await pilot.pause(0.1)
        err = str(form.query_one("#run-error", Static).content)
        assert "AAPL (1700 rows)" in err and "horizon 100000" in err, err
        assert app.screen is form and not app.services.jobs()  # refused before queueing
        assert form.build_params("baseline")[1] == 7  # the priority typed went to the priority field
        # no baseline yet: the planner says so instead of showing "medium" as if measured
        assert "tier unknown — run a baseline" in str(form.query_one("#run-plan", Static).content)
        form.query_one("#run-kind", Select).value = "train"
        await wait_for(lambda: form.query("#run-epochs") and form.query_one("#run-model", Select).display,
                       10, "the train fields and the model select", pilot=pilot)
        form.query_one("#run-horizon", Input).value = ""
        form.query_one("#run-context", Input).value = "5000"
        form.action_submit()
        await pilot.pause(0.05)
        assert "AAPL (1700 rows)" in str(form.query_one("#run-error", Static).content)  # the train rule too
        await pilot.press("escape")
        await pilot.pause(0.1)
        form = await _open_form(app, pilot, ["AAPL"])
        assert form.query_one("#run-kind", Select).value == "train"  # the kind last chosen
    again = _app(env)
    async with again.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(again.ready.wait(), 20)
        form = await _open_form(again, pilot, ["AAPL"])
        assert form.query_one("#run-kind", Select).value == "train"  # kept between runs


async def test_the_form_plans_at_the_jobs_horizon_and_shows_what_a_tiny_pipeline_trains_with(
        env: dict[str, Path]) -> None:  # noqa: F811
    """The planner line and placeholders are what the job will run: a pipeline trains at its own
    horizon (16, or the one typed), and with the tiny preset one short epoch at context 64
    (PipelineParams.TINY_TRAIN), not the planner's 128 and 15 at h 64 that the form showed."""
    from engine.task_params import PipelineParams

    app = _app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 20)
        form = await _open_form(app, pilot, ["AAPL"])

        def plan() -> str:
            return str(form.query_one("#run-plan", Static).content)

        form.query_one("#run-kind", Select).value = "train"
        await wait_for(lambda: form.query("#run-epochs"), 10, "the train fields", pilot=pilot)
        train_plan = app.services.plan("AAPL", "toto", "tiny")
        assert f"h {train_plan['horizon']}" in plan()  # a train job without a horizon: the planner's own
        form.query_one("#run-kind", Select).value = "pipeline"
        await wait_for(lambda: form.query("#run-mode"), 10, "the pipeline fields", pilot=pilot)
        tiny = PipelineParams.TINY_TRAIN

        def placeholders() -> tuple[str, str]:
            return (str(form.query_one("#run-context", Input).placeholder),
                    str(form.query_one("#run-epochs", Input).placeholder))

        await wait_for(lambda: f"ctx {tiny['context']} · h 16" in plan() and f"ep {tiny['epochs']}" in plan()
                       and placeholders() == (f"planner: {tiny['context']}", f"planner: {tiny['epochs']}"), 5,
                       "the pipeline's training in the plan line and the empty fields",
                       pilot=pilot, detail=lambda: f"{plan()!r} {placeholders()}")
        form.query_one("#run-horizon", Input).value = "32"
        await wait_for(lambda: "· h 32" in plan(), 5, "the plan at the typed horizon", pilot=pilot)


async def test_keys_panel_closes_with_question_mark_and_escape_and_theme_is_kept(env: dict[str, Path]) -> None:  # noqa: F811
    app = _app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 20)
        await pilot.press("question_mark")
        assert app.screen.query(HelpPanel)
        await pilot.press("question_mark")
        assert not app.screen.query(HelpPanel)
        await pilot.press("question_mark")
        await pilot.press("escape")
        assert not app.screen.query(HelpPanel)
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        await pilot.pause(0.05)
        assert app.theme == "textual-light"
    again = _app(env)
    async with again.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(again.ready.wait(), 20)
        assert again.theme == "textual-light"


def test_queue_lists_running_first_newest_first_and_spawned_jobs_under_their_pipeline() -> None:
    from console.screens.queue import queue_order
    from engine.state import JobState

    def job(jid: str, kind: str, state: str, t: float, parent: str | None = None) -> JobState:
        return JobState(jid, kind, ("SPY",), None, state=state, created_at=t, parent=parent)

    jobs = [job("old-ok", "baseline", "succeeded", 1), job("pipe", "pipeline", "running", 2),
            job("step-1", "baseline", "succeeded", 3, "pipe"), job("step-2", "train", "running", 4, "pipe"),
            job("sweep", "sweep", "succeeded", 5, "pipe"), job("trial", "train", "succeeded", 6, "sweep"),
            job("new-q", "validate", "queued", 7), job("retry", "pipeline", "queued", 8, "pipe"),
            job("new-ok", "compare", "failed", 9)]
    order = [(j.id, depth) for j, depth in queue_order(jobs)]
    assert order == [("pipe", 0), ("step-1", 1), ("step-2", 1), ("sweep", 1), ("trial", 2),
                     ("retry", 0), ("new-q", 0),  # a retry names its parent but is a job of its own
                     ("new-ok", 0), ("old-ok", 0)]


async def test_stocks_fast_typing_keeps_every_selection_and_a_cleared_filter_keeps_sort_order(
        env: dict[str, Path]) -> None:  # noqa: F811
    """Keys posted in one burst, as the terminal driver posts keys typed fast (Pilot's press waits
    for each key to be handled, which hid the bug): `/NV` Enter Space `/` ⌫⌫ `SP` Enter Space."""
    from textual import events

    chars = {"slash": "/", "space": " ", "enter": "\r", "backspace": "\x7f"}

    def burst(app: ForecastConsoleApp, keys: list[str]) -> None:
        for k in keys:
            app.post_message(events.Key(k, chars.get(k, k)))

    app = _app(env)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 20)
        stocks = app.get_screen_for_mode("stocks")
        await wait_for(lambda: getattr(stocks, "loaded", False), 20, "the stocks rows", pilot=pilot)
        burst(app, ["slash", "A", "A", "enter", "space", "slash", "backspace", "backspace", *"SP", "enter", "space"])
        await wait_for(lambda: stocks.selected == {"AAPL", "SPY"}, 10, "both symbols selected", pilot=pilot)
        assert stocks.table.row_ids == ["SPY"]
        burst(app, ["slash", "backspace", "backspace", "enter"])
        await wait_for(lambda: stocks.table.row_count == 3, 10, "every row back", pilot=pilot)
        assert stocks.table.row_ids == ["AAPL", "SPY", "TSLA"]  # SPY back in its place, not appended
        assert stocks.selected == {"AAPL", "SPY"}


async def test_the_stocks_table_has_the_focus_as_soon_as_the_screen_is_mounted(env: dict[str, Path]) -> None:  # noqa: F811
    """Keys typed while the console starts (`/NV` before the engine is up) are handled after the
    screen mounts: had Textual's auto-focus given the filter field the focus first, `/` itself was
    typed into the filter as text and nothing matched."""
    from console.screens.stocks import StocksScreen
    from console.widgets.table import KeyedTable

    app = _app(env)
    async with app.run_test(size=(120, 40)):
        scr = StocksScreen()
        await app.push_screen(scr)
        assert isinstance(scr.focused, KeyedTable), scr.focused  # not after a later call_later


async def test_stocks_filter_enter_keeps_it_and_escape_clears_it(env: dict[str, Path]) -> None:  # noqa: F811
    app = _app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        stocks = app.get_screen_for_mode("stocks")
        await wait_for(lambda: getattr(stocks, "loaded", False), 20, "the stocks rows", pilot=pilot)
        everything = stocks.table.row_count  # type: ignore[attr-defined]
        await pilot.press("slash", *"AAPL", "enter")
        await wait_for(lambda: stocks.table.row_count == 1, 5, "the filtered rows", pilot=pilot)  # type: ignore[attr-defined]
        await pilot.press("escape")  # after Enter: the applied filter goes
        await wait_for(lambda: stocks.table.row_count == everything, 5, "every row back", pilot=pilot)  # type: ignore[attr-defined]
        await pilot.press("slash", *"SP", "escape")  # while typing: cancelled
        await wait_for(lambda: stocks.table.row_count == everything and not stocks.filtering,  # type: ignore[attr-defined]
                       5, "every row, not filtering", pilot=pilot)
        assert stocks.filter_input.value == ""  # type: ignore[attr-defined]
