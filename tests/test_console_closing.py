"""A screen's read that finishes while the screen is being removed renders nothing and raises nothing.

Why: each screen reads its data in a worker (reads run off the loop, console.services) and then
fills its widgets. Textual removes a screen's widgets before it cancels the screen's workers (at
the screen's own unmount); a read that finished in between found no widgets, the worker failed
with NoMatches and the app exited with that error (seen in CI at the end of a Pilot test; a user
quitting while a job finished would see the traceback). The reads here are held until the widget
the screen fills is gone, which is that window made certain.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.worker import WorkerState

from console.app import ForecastConsoleApp
from console.services import ConsoleServices
from tests.helpers import wait_for
from tests.test_console_app import env  # noqa: F401


async def _until_gone(screen: Any, selector: str) -> None:
    """Return once `selector` no longer matches in `screen` (its widget was removed).

    Looks at every turn of the loop: the screen's unmount (which cancels its workers) follows the
    removal of its last widget by only a few turns.
    """
    while screen.query(selector):
        await asyncio.sleep(0)


async def test_a_read_finishing_while_the_console_closes_is_dropped(env: dict[str, Path]) -> None:  # noqa: F811
    svc = ConsoleServices(env["ws"], hyperparams_dir=env["hp"])
    app = ForecastConsoleApp(svc, telemetry_interval=None, start_engine=False)
    held: list[str] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 20)  # the workspace is open: no reload of its own follows
        stocks = app.get_screen_for_mode("stocks")
        await wait_for(lambda: getattr(stocks, "loaded", False), 20, "the stocks rows", pilot=pilot)
        await pilot.pause()
        rows = await svc.stocks(None)

        async def stocks_after_the_filter_is_gone(horizon: int | None) -> list[Any]:
            held.append("stocks")
            await _until_gone(stocks, "#stock-filter")
            return rows

        svc.stocks = stocks_after_the_filter_is_gone  # type: ignore[method-assign]
        stocks.reload()
        await wait_for(lambda: held, 5, "the held read to start", pilot=pilot)
        loads = [w for w in app.workers if w.group == "stocks-load"]
        assert loads and loads[0].state is WorkerState.RUNNING
    # run_test re-raises what made the app exit: nothing did. The read was dropped, not rendered.
    assert held == ["stocks"]
    assert loads[0].state is WorkerState.CANCELLED


async def test_a_read_finishing_after_the_forecast_view_was_closed_is_dropped(env: dict[str, Path]) -> None:  # noqa: F811
    """The view closed (Esc) while its forecasts were still being read: the screen a user pops."""
    from console.messages import ForecastRequested
    from console.screens.forecast_view import ForecastScreen, find_forecasts

    svc = ConsoleServices(env["ws"], hyperparams_dir=env["hp"])
    app = ForecastConsoleApp(svc, telemetry_interval=None, start_engine=False)
    held: list[str] = []
    call = svc.call
    view = ForecastScreen(ForecastRequested("AAPL", "toto", 16, "tiny"))

    async def forecasts_after_the_title_is_gone(fn: Any, *args: Any, **kwargs: Any) -> Any:
        found = await call(fn, *args, **kwargs)
        if fn is find_forecasts:
            held.append("forecasts")
            await _until_gone(view, "#fv-title")
        return found

    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 20)
        svc.call = forecasts_after_the_title_is_gone  # type: ignore[method-assign]
        await app.push_screen(view)
        await wait_for(lambda: held, 5, "the held read to start", pilot=pilot)
        loads = [w for w in app.workers if w.group == "forecast-load"]
        await pilot.press("escape")
        await wait_for(lambda: loads[0].is_finished, 5, "the view's read to end", pilot=pilot)
        assert app.screen is not view
    assert held == ["forecasts"]
    assert loads[0].state is WorkerState.CANCELLED
