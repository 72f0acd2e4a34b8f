"""App ↔ screen traffic is Textual messages (console.messages), on the real app, engine service and store.

Screens ask the app by posting a request (StartRunRequested, SelectionChanged, QueueJobRequested,
OpenLiveRequested, PromoteRequested); the app answers the mode screen on view with notices (WorkspaceOpened,
TelemetrySampled, JobsUpdated, JobQueued, ShowJob, DecisionsChanged). `message_hook` sees every
message as it is dispatched (a bubbling request once per node it passes), so each test checks both
what was posted and what it did.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.notifications import Notify

from console import messages as m
from console.screens.configs import ConfigsScreen
from console.screens.live import LiveScreen
from console.screens.stocks import StocksScreen
from tests.helpers import wait_for
from tests.test_console_snapshots import FAILED_ID, TRAIN_ID, make_app, seeded  # noqa: F401


def _of(seen: list[Message], kind: type[Message]) -> list[Any]:
    """The messages of `kind`, each once (a request is dispatched at the screen, then at the app)."""
    return list({id(x): x for x in seen if isinstance(x, kind)}.values())


async def test_queue_and_live_by_messages(seeded: dict[str, Path]) -> None:  # noqa: F811
    seen: list[Message] = []
    app = make_app(seeded)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await asyncio.wait_for(app.ready.wait(), 30)
        # startup: the screen on view is told the workspace is open, and gets the first GPU sample
        await wait_for(lambda: bool(_of(seen, m.WorkspaceOpened)) and bool(_of(seen, m.TelemetrySampled)),
                       10, "the startup notices", pilot=pilot)
        assert isinstance(app.screen, StocksScreen)
        tel = _of(seen, m.TelemetrySampled)[0]
        assert tel.telemetry is app.telemetry and len(tel.telemetry.gpus) == 1
        await pilot.press("2")
        table = app.screen.table
        await wait_for(lambda: {TRAIN_ID, FAILED_ID} <= set(table.row_ids), 10, "the seeded jobs on Queue", pilot=pilot)
        table.move_cursor(row=table.get_row_index(TRAIN_ID))
        await pilot.press("enter")
        await wait_for(lambda: isinstance(app.screen, LiveScreen) and app.screen.job_id == TRAIN_ID, 10,
                       "Live on the job opened", pilot=pilot)
        assert [x.job_id for x in _of(seen, m.OpenLiveRequested)] == [TRAIN_ID]
        assert not _of(seen, m.ShowJob)  # a Live screen composed now opens on the job asked for
        live = app.screen
        await pilot.press("2")
        await wait_for(lambda: app.screen is not live, 5, "back on Queue", pilot=pilot)
        table.move_cursor(row=table.get_row_index(FAILED_ID))
        await pilot.press("enter")
        # the Live screen that exists already is told which job to show
        await wait_for(lambda: app.screen is live and live.job_id == FAILED_ID, 10, "Live on the second job", pilot=pilot)
        assert [x.job_id for x in _of(seen, m.ShowJob)] == [FAILED_ID]
        assert "failed" in str(live.query_one("#live-title").render())


async def test_stocks_and_decisions_by_messages(seeded: dict[str, Path]) -> None:  # noqa: F811
    seen: list[Message] = []
    app = make_app(seeded)
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await asyncio.wait_for(app.ready.wait(), 30)
        stocks = app.screen
        assert isinstance(stocks, StocksScreen)
        await wait_for(lambda: stocks.table.row_count == 5, 10, "stock rows", pilot=pilot)
        await pilot.press("r")  # nothing selected: the app says so and opens no form
        await wait_for(lambda: bool(_of(seen, m.StartRunRequested)), 5, "the run request", pilot=pilot)
        await pilot.pause()
        assert isinstance(app.screen, StocksScreen)
        assert any("select symbols" in x.notification.message for x in _of(seen, Notify))
        stocks.table.move_cursor(row=stocks.table.get_row_index("SPY"))
        await pilot.press("space", "b")
        await wait_for(lambda: bool(_of(seen, m.JobQueued)), 10, "the queued notice", pilot=pilot)
        assert _of(seen, m.SelectionChanged)[-1].symbols == app.selected_symbols == ["SPY"]  # told, not read
        (ask,) = _of(seen, m.QueueJobRequested)
        assert (ask.kind, ask.symbols, ask.model, ask.params) == ("baseline", ["SPY"], None, {})
        job_id = _of(seen, m.JobQueued)[0].job_id
        assert [j.kind for j in app.services.jobs() if j.id == job_id] == ["baseline"]
        # the engine's updates reach the screen on view as batches, one of them saying it finished
        await wait_for(lambda: any(job_id in x.finished for x in _of(seen, m.JobsUpdated)), 60,
                       "the baseline job to finish", pilot=pilot)
        await pilot.press("6")
        await wait_for(lambda: isinstance(app.screen, ConfigsScreen) and app.screen.picks, 10, "the picks", pilot=pilot)
        configs = app.screen
        await pilot.press("p")
        await wait_for(lambda: type(app.screen).__name__ == "ConfirmScreen", 10, "the promote dialog", pilot=pilot)
        (ask_p,) = _of(seen, m.PromoteRequested)
        assert (ask_p.source, ask_p.horizon) == ("pick", 64) and (ask_p.model, ask_p.symbol) in {
            (p.model, p.symbol) for p in configs.picks.values()}
        await pilot.press("escape")  # no: nothing written, nothing to re-read
        await wait_for(lambda: app.screen is configs, 5, "the dialog closed", pilot=pilot)
        await pilot.press("p")
        await wait_for(lambda: type(app.screen).__name__ == "ConfirmScreen", 10, "the promote dialog again", pilot=pilot)
        assert not _of(seen, m.DecisionsChanged)
        await pilot.press("enter")
        path = seeded["hp"] / ask_p.model / f"{ask_p.symbol}.json"
        await wait_for(lambda: path.is_file() and bool(_of(seen, m.DecisionsChanged)), 15,
                       "the promotion and the screen told to re-read", pilot=pilot)
        promos = configs.query_one("#promos-table")
        await wait_for(lambda: promos.row_count == 1, 5, "the promotion listed", pilot=pilot)
