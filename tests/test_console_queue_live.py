"""Pilot tests: Queue's `enter` → Live is shown in the footer and works; Live's log tail wraps long
lines (all of a long line is on screen), stays bounded, and re-wraps when the pane width changes.

Uses the seeded store of the snapshot tests (fixed job records, no workers started).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.widgets import Footer

from console.widgets.log_tail import LogTail
from tests.helpers import wait_for
from tests.test_console_snapshots import FAILED_ID, TRAIN_ID, make_app, seeded  # noqa: F401


async def _live_on_train_job(app: Any, pilot: Any) -> tuple[Any, LogTail]:
    """Live showing the seeded train job, and its log."""
    await asyncio.wait_for(app.ready.wait(), 10)
    app.open_live(TRAIN_ID)
    await pilot.pause(0.3)
    return app.screen, app.screen.query_one(LogTail)


def footer_text(app: Any) -> str:
    footer = app.screen.query_one(Footer)
    return " ".join(str(k.render()) for k in footer.children)


def log_screen_text(log: LogTail) -> str:
    """The text of every wrapped line the log holds (what scrolling would show)."""
    return "\n".join(strip.text.rstrip() for strip in log.lines)


async def test_queue_enter_shown_in_footer_and_opens_live(seeded: dict[str, Path]) -> None:  # noqa: F811
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("2")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "QueueScreen"
        active = app.screen.active_bindings
        assert active["enter"].binding.id == "queue-live" and active["enter"].binding.show
        assert "Live" in footer_text(app)
        table = app.screen.table
        table.move_cursor(row=table.get_row_index(FAILED_ID))  # not the row the cursor starts on
        await pilot.pause(0.2)
        assert app.screen.table.current_id == FAILED_ID
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ == "LiveScreen"
        assert app.screen.job_id == FAILED_ID


async def test_live_log_wraps_long_lines_and_stays_bounded(seeded: dict[str, Path]) -> None:  # noqa: F811
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        live, log = await _live_on_train_job(app, pilot)
        width = log.scrollable_content_region.width
        long = "traceback: " + " ".join(f"word{i:03d}" for i in range(40)) + " END"
        assert len(long) > 2 * width
        live.apply_job_updates({TRAIN_ID}, {}, {TRAIN_ID: [long]})
        await pilot.pause(0.2)
        text = log_screen_text(log)
        assert "word000" in text and "word039 END" in text  # nothing cut at the right edge
        assert " ".join(text.split()).endswith(" ".join(long.split()))  # all words, in order
        assert all(strip.cell_length <= width for strip in log.lines)
        assert log.max_scroll_x == 0
        # the visible region (bottom of the log, auto-scrolled) shows the end of the long line
        visible = [log.render_line(y).text for y in range(log.scrollable_content_region.height)]
        assert any("END" in line for line in visible), visible

        # narrower pane → the kept lines are re-wrapped at the new width
        await pilot.resize_terminal(100, 40)
        await pilot.pause(0.3)
        narrow = log.scrollable_content_region.width
        assert narrow < width
        assert all(strip.cell_length <= narrow for strip in log.lines)
        assert "word039 END" in log_screen_text(log)

        # bounded: only the last LOG_LINES raw lines are kept, wrapped lines bounded too
        live.apply_job_updates({TRAIN_ID}, {}, {TRAIN_ID: [f"line {i}" for i in range(500)]})
        # streamed lines are written at most once a second (STREAM_FLUSH_S): wait for that flush
        await wait_for(lambda: bool(log.raw_lines) and log.raw_lines[-1] == "line 499", 10, "the streamed lines")
        assert len(log.raw_lines) == 200 and log.raw_lines[-1] == "line 499"
        assert len(log.lines) <= 200


async def test_lines_the_pump_still_held_when_live_opened_a_job_are_shown_once(seeded: dict[str, Path]) -> None:  # noqa: F811
    """Live reads the job's log tail from the engine mirror, which already holds the lines the update
    pump delivers a moment later: those show once, and the pump's lines read as the tail's do."""
    from console.screens.live import repeated_lines
    from console.update_pump import group_updates
    from engine.state import JobUpdate

    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        live, log = await _live_on_train_job(app, pilot)
        tail = list(app.services.log_tail(TRAIN_ID))
        assert len(tail) >= 2, tail
        await wait_for(lambda: log.raw_lines == tail, 5, "the tail written", pilot=pilot)
        new = "12:00:00 info    a new line"
        _, _, logs = group_updates([JobUpdate(TRAIN_ID, "log", {"level": "info", "msg": "?", "line": line})
                                    for line in [*tail[-2:], new]])
        assert logs[TRAIN_ID] == [*tail[-2:], new]  # the engine's own line, not re-formatted
        live.apply_job_updates({TRAIN_ID}, {}, logs)
        await wait_for(lambda: log.raw_lines[-1:] == [new], 10, "the streamed line", pilot=pilot)
        assert log.raw_lines == [*tail, new]
        # later batches are not compared with the tail: a line may repeat an earlier one
        live.apply_job_updates({TRAIN_ID}, {}, {TRAIN_ID: [new]})
        await wait_for(lambda: log.raw_lines == [*tail, new, new], 10, "the repeated line", pilot=pilot)
    assert repeated_lines(["a", "b", "c"], ["b", "c", "d"]) == 2
    assert repeated_lines(["a", "b"], ["x", "b"]) == 0 and repeated_lines([], ["a"]) == 0
