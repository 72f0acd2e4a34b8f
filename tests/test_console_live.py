"""The Live screen on a two-symbol train job (seeded job record and event file, real engine service):
one curve pair per symbol/run, the kept (best) validation loss in a header that never wraps, markers,
smoothing and log scale; and a stopped job that never trained shows no progress, only where it stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from console.widgets.loss_chart import LossChart
from store import Store
from tests.test_console_app import wait_for
from tests.test_console_snapshots import T0, TWO_ID, _job_rec, make_app, seed_two_symbol_job, seeded  # noqa: F401

NEVER_RAN = "20250615-150900-000-train-0000eeee"


def _text(app: Any, wid: str) -> str:
    return str(app.screen.query_one(wid).render())


async def test_two_symbol_live_curves_best_val_header_and_options(seeded: dict[str, Path]) -> None:  # noqa: F811
    seed_two_symbol_job(seeded["ws"])
    with Store.open(seeded["ws"]) as st:  # cancelled while planning its first symbol: no step ever ran
        st.put_job(_job_rec(NEVER_RAN, "train", ["SPY", "AAPL"], "toto", "cancelled", T0 + 90, reason="cancelled by user",
                            stage="planning", symbol="SPY", symbol_i=1, symbol_n=2, epoch_i=0, epoch_n=15))
    app = make_app(seeded)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 30)
        app.open_live(TWO_ID)
        await wait_for(pilot, lambda: bool(app.screen.query(LossChart)), 5, "the Live screen")
        chart = app.screen.query_one(LossChart)
        await wait_for(pilot, lambda: len(chart.series) == 2, 10, "two series")
        spy, aapl = chart.series.values()
        assert (spy.label, aapl.label) == ("SPY", "AAPL")
        assert spy.train[0][0] == aapl.train[0][0] == 1.0  # each run from its own step 1: no line back
        assert spy.stopped_early and not aapl.stopped_early  # the job's SPY.stopped_early metric
        await pilot.pause(0.1)
        best = _text(app, "#live-best")
        assert "best val SPY 0.42 (epoch 2), AAPL 0.48 (epoch 3)" in best  # kept, not SPY's last 0.45
        for wid in ("#live-title", "#live-best"):
            assert app.screen.query_one(wid).region.height == 1  # never wraps at 80 columns
        await pilot.press("s", "l")
        assert chart.smooth and chart.log_scale
        await pilot.pause(0.6)
        assert chart.draw_count >= 2 and "(smoothed, log)" in chart._title()
        await pilot.press("o")  # no earlier chronos2 runs in this workspace: said so, nothing overlaid
        await wait_for(pilot, lambda: any("no earlier chronos2 runs" in n.message for n in app._notifications), 5,
                       "the overlay's answer")
        assert not chart.earlier
        app.open_live(NEVER_RAN)  # after a finished job: its bar must not carry over, nor show 100 %
        await pilot.pause(0.1)
        bar = app.screen.query_one("#live-progress")
        assert bar.total is None and bar.progress == 0
        title = _text(app, "#live-title")
        assert "cancelled" in title and "stopped at planning · SPY 1/2" in title
        assert "epoch" not in title  # epoch 0: it never trained
