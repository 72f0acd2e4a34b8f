"""The Live screen on a two-symbol train job (seeded job record and event file, real engine service):
one curve pair per symbol/run, the kept (best) validation loss in a header that never wraps, markers,
smoothing and log scale; and a stopped job that never trained shows no progress, only where it stopped.
A second console on the same workspace follows, and cancels, what the first one started."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from console.widgets.loss_chart import LossChart
from store import Store
from tests.helpers import notices, wait_for
from tests.test_console_app import env  # noqa: F401
from tests.test_console_app import make_app as make_console
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
        await wait_for(lambda: bool(app.screen.query(LossChart)), 5, "the Live screen", pilot=pilot)
        chart = app.screen.query_one(LossChart)
        await wait_for(lambda: len(chart.series) == 2, 10, "two series", pilot=pilot)
        spy, aapl = chart.series.values()
        assert (spy.label, aapl.label) == ("SPY", "AAPL")
        assert spy.train[0][0] == aapl.train[0][0] == 1.0  # each run from its own step 1: no line back
        assert spy.stopped_early and not aapl.stopped_early  # the job's SPY.stopped_early metric
        # kept, not SPY's last 0.45; the header is written (rate-limited) and laid out after the points came
        await wait_for(lambda: "best val SPY 0.42 (epoch 2), AAPL 0.48 (epoch 3)" in _text(app, "#live-best"), 10,
                       "the kept validation losses in the header", pilot=pilot, detail=lambda: _text(app, "#live-best"))
        heads = [app.screen.query_one(wid) for wid in ("#live-title", "#live-best")]
        await wait_for(lambda: all(w.region.height > 0 for w in heads), 10, "the header's layout", pilot=pilot)
        assert [w.region.height for w in heads] == [1, 1]  # never wraps at 80 columns
        await pilot.press("s", "l")
        assert chart.smooth and chart.log_scale
        await wait_for(lambda: chart.draw_count >= 2, 10, "the chart redrawn", pilot=pilot)  # redraws are rate-limited
        assert "(smoothed, log)" in chart._title()
        await pilot.press("o")  # no earlier chronos2 runs in this workspace: said so, nothing overlaid
        await wait_for(lambda: any("no earlier chronos2 runs" in n.message for n in app._notifications), 5,
                       "the overlay's answer", pilot=pilot)
        assert not chart.earlier
        app.open_live(NEVER_RAN)  # after a finished job: its bar must not carry over, nor show 100 %
        await wait_for(lambda: app.screen.job_id == NEVER_RAN and "stopped at" in _text(app, "#live-title"), 10,
                       "Live on the job that never trained", pilot=pilot)
        bar = app.screen.query_one("#live-progress")
        assert bar.total is None and bar.progress == 0
        title = _text(app, "#live-title")
        assert "cancelled" in title and "stopped at planning · SPY 1/2" in title
        assert "epoch" not in title  # epoch 0: it never trained


async def test_a_second_console_sees_jobs_another_console_started_and_cancels_one(
        env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Two app instances on one workspace: the first queues a two-symbol job and a long one; the second
    shows both in its Queue as they happen, the two-symbol job's loss points as two curves on Live, and
    cancels the long one from Live; both then show it cancelled, and where it stopped."""
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")  # the service the first console starts runs scripted jobs
    one, two = make_console(env), make_console(env)
    async with one.run_test(size=(120, 40)) as p1, two.run_test(size=(120, 40)) as p2:
        await asyncio.wait_for(one.ready.wait(), 30)
        await asyncio.wait_for(two.ready.wait(), 30)
        for app in (one, two):  # both live, not read-only
            assert app.services.engine is not None and not app.services.readonly_reason, notices(app)
        assert one.queue_jobs("train", ["SPY", "AAPL"], "toto", {"_test": {"steps": 40, "sleep": 0.02}}, quiet=True), \
            notices(one)
        assert one.queue_jobs("train", ["TSLA"], "toto", {"_test": {"steps": 4000, "sleep": 0.05}}, quiet=True), \
            notices(one)
        short, long_ = (j.id for j in one.services.jobs())
        await p2.press("2")
        await wait_for(lambda: type(two.screen).__name__ == "QueueScreen", 5, "the second console's Queue", pilot=p2)
        table = two.screen.table
        await wait_for(lambda: {short, long_} <= set(table.row_ids), 20, "both jobs in the second Queue", pilot=p2)
        await wait_for(lambda: getattr(two.services.job(short), "state", None) == "succeeded", 30,
                       "the two-symbol job to finish", pilot=p2)
        two.open_live(short)
        await wait_for(lambda: bool(two.screen.query(LossChart)), 5, "the Live screen", pilot=p2)
        chart = two.screen.query_one(LossChart)
        # the job asked for, not the running one that streamed while the screen was being composed
        await wait_for(lambda: two.screen.job_id == short, 5, "Live to show the job opened", pilot=p2)
        # the history arrives in batches: wait for all of it, then check its shape
        try:
            await wait_for(lambda: len(chart.series) == 2 and all(len(s.train) == 20 for s in chart.series.values()),
                           10, "two full curves on the second console's Live", pilot=p2)
        except AssertionError:
            raise AssertionError([(s.label, [x for x, _ in s.train]) for s in chart.series.values()]) from None
        assert [s.label for s in chart.series.values()] == ["SPY", "AAPL"]
        assert all(s.train[0][0] == 1.0 for s in chart.series.values())
        await wait_for(lambda: getattr(two.services.job(long_), "symbol", None) == "TSLA", 30, "the long job running", pilot=p2)
        await p2.press("n")  # next job: the long one
        await wait_for(lambda: two.screen.job_id == long_ and chart.n_points > 0, 10, "the long job's points", pilot=p2)
        await p2.press("c")  # a running job: the console asks first
        await wait_for(lambda: type(two.screen).__name__ == "ConfirmScreen", 5, "the cancel question", pilot=p2)
        await p2.press("y")
        for app, pilot in ((one, p1), (two, p2)):
            await wait_for(lambda app=app: getattr(app.services.job(long_), "state", None) == "cancelled", 20,
                           "both consoles to show the job cancelled", pilot=pilot)
        await wait_for(lambda: "cancelled · stopped at test · TSLA" in _text(two, "#live-title"), 5,
                       "the Live header to say where the job stopped", pilot=p2)


def test_history_overlapping_pumped_updates_adds_no_point_twice() -> None:
    """The curve read when Live opens and the loss updates still in the pump overlap: each point once, an
    epoch's val point kept beside the train point of the same step, a later step still taken."""
    chart = LossChart()
    pts = [{"step": i, "epoch": 0, "train": 1.0 / i, "symbol": "SPY"} for i in range(1, 6)]
    pts.append({"step": 5, "epoch": 0, "train": 0.21, "val": 0.3, "symbol": "SPY"})  # the epoch's close
    chart.add_points(pts, _redraw=False)
    chart.add_points([*pts[3:], {"step": 6, "epoch": 1, "train": 0.1, "symbol": "SPY"}], _redraw=False)
    (spy,) = chart.series.values()
    assert [x for x, _ in spy.train] == [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0] and [v[:2] for v in spy.val] == [(5.0, 0.3)]
