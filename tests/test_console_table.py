"""KeyedTable: cheap cell updates, numeric sorting, a cursor that follows its row, the hold window.

Why these tests: the Queue screen's cost depends on writing only the cells that changed (through
DataTable's public `update_cell`) and on streaming writes being held back briefly after a cursor
move — but never long enough to freeze the display. They run a real
Textual app headless; what is asserted is what the table would paint (`render_line`).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from textual.app import App, ComposeResult

from console.screens.queue import progress_cell
from console.widgets.table import Cell, KeyedTable, clock_cell, num, txt

COLUMNS = (("name", "Name"), ("score", "Score"), ("note", "Note"))


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="t")


def rows(scores: dict[str, float | None], note: str = "n") -> dict[str, dict[str, Cell]]:
    return {rid: {"name": txt(rid), "score": num(v, "{:.1f}"), "note": txt(note)} for rid, v in scores.items()}


def line_text(table: KeyedTable, row_id: str) -> str:
    """The text the table paints for `row_id` (header is line 0)."""
    y = table.get_row_index(row_id) + 1
    return table.render_line(y).text


async def _settle(pilot: Any) -> None:
    await pilot.pause()
    await pilot.pause()


async def test_a_value_change_writes_only_its_cell_through_update_cell() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.hold_after_cursor_s = 0.0
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0}))
        await _settle(pilot)
        written: list[tuple[str, str]] = []
        update_cell = table.update_cell

        def spy(row_key: Any, column_key: Any, value: Any, *, update_width: bool = False) -> None:
            written.append((str(row_key), str(column_key)))
            update_cell(row_key, column_key, value, update_width=update_width)

        table.update_cell = spy  # type: ignore[method-assign]
        assert "2.0" in line_text(table, "b")
        other = line_text(table, "c")

        assert table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0})) == 0
        assert written == [], "unchanged cells are not written"
        assert table.sync(rows({"a": 1.0, "b": 7.5, "c": 3.0})) == 1
        assert written == [("b", "score")]
        await _settle(pilot)
        assert "7.5" in line_text(table, "b") and "2.0" not in line_text(table, "b")
        assert table.raw("b", "score") == 7.5
        assert line_text(table, "c") == other


async def test_wider_text_widens_the_column() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.hold_after_cursor_s = 0.0
        table.sync(rows({"a": 1.0, "b": 2.0}))
        await _settle(pilot)
        table.sync(rows({"a": 1.0, "b": 2.0}, note="a much longer note than before"))
        await _settle(pilot)
        assert "a much longer note than before" in line_text(table, "a")
        assert "a much longer note than before" in line_text(table, "b")


async def test_a_frame_drawn_right_after_a_widening_write_has_the_new_width() -> None:
    """DataTable measures widths when idle; a frame drawn before that (a busy screen) cached each row
    at the old width, and rows kept showing `medi` for `medium` until they changed again."""
    app = TableApp()
    async with app.run_test(size=(80, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.hold_after_cursor_s = 0.0
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0}, note="?"))
        await _settle(pilot)
        table.sync({rid: {"name": txt(rid), "score": num(v, "{:.1f}"), "note": txt("medium" if rid == "b" else "easy")}
                    for rid, v in {"a": 1.0, "b": 2.0, "c": 3.0}.items()})
        assert "medium" in line_text(table, "b")  # drawn before the table's idle
        await _settle(pilot)
        assert "medium" in line_text(table, "b")
        assert line_text(table, "a").index("easy") == line_text(table, "b").index("medium")


async def test_numeric_sort_and_none_last() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows({"ten": 10.0, "none": None, "nine": 9.0, "big": 100.0}))
        await _settle(pilot)
        table.sort_by("score")
        assert table.row_ids == ["nine", "ten", "big", "none"]  # text sort would put "10.0" first
        table.sort_by("score")  # same column again flips
        assert table.row_ids == ["none", "big", "ten", "nine"]  # reversed: None (last) comes first
        assert table.sort_reverse is True


async def test_sort_by_unknown_column_is_rejected_and_changes_nothing() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows({"b": 2.0, "a": 1.0}))
        await _settle(pilot)
        with pytest.raises(ValueError, match="unknown column 'nope'"):
            table.sort_by("nope")
        assert table.sort_column is None
        assert table.row_ids == ["b", "a"]


async def test_cursor_follows_its_row_when_data_resorts_or_rows_go() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.hold_after_cursor_s = 0.0
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}))
        table.sort_by("score")
        await _settle(pilot)
        table.move_cursor(row=table.get_row_index("c"))
        await _settle(pilot)
        assert table.current_id == "c"

        # c's score drops below everything: the row moves to the top and the cursor goes with it.
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 0.5, "d": 4.0}))
        await _settle(pilot)
        assert table.row_ids[0] == "c"
        assert table.current_id == "c" and table.cursor_row == 0

        # A row before it disappears and a new one sorts in front of it.
        table.sync(rows({"a": 1.0, "c": 0.5, "d": 4.0, "z": 0.1}))
        await _settle(pilot)
        assert table.row_ids == ["z", "c", "a", "d"]
        assert table.current_id == "c"

        table.drop(["z"])
        await _settle(pilot)
        assert table.current_id == "c"


async def test_writes_are_held_after_a_cursor_move_but_not_for_long() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows({"a": 1.0, "b": 2.0, "c": 3.0}))
        await _settle(pilot)
        await pilot.press("down")
        assert table.current_id == "b"

        table.sync(rows({"a": 1.0, "b": 2.0, "c": 8.5}))
        assert table.raw("c", "score") == 8.5  # the model is current at once
        assert "3.0" in line_text(table, "c")  # the screen waits for the hold window

        # Keep "pressing keys" every 40 ms: the hold must still give way (streaming values stay live at a
        # few Hz even while an arrow key is held down). Counted in presses, not seconds: a loaded machine
        # makes each press slower, which only lets the hold expire sooner.
        t0, presses = time.monotonic(), 0
        while "8.5" not in line_text(table, "c"):
            assert presses < 50, "held writes starved by key presses"
            await pilot.press("down" if table.cursor_row == 0 else "up")
            await pilot.pause(0.04)
            presses += 1
        assert time.monotonic() - t0 >= 0.05


async def test_sort_by_applies_held_writes_first() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows({"a": 1.0, "b": 2.0}))
        await _settle(pilot)
        await pilot.press("down")
        table.sync(rows({"a": 5.0, "b": 2.0}))
        table.sort_by("score")
        assert table.row_ids == ["b", "a"]
        assert "5.0" in line_text(table, "a")


def test_queue_cells_sort_on_raw_values() -> None:
    assert progress_cell(250, 1000).text == "██░░░░░░  25%"
    assert progress_cell(None, None).value is None
    assert progress_cell(5, 0).text == "—"
    eta = clock_cell(3725.0)
    assert eta.text == "1h02m" and eta.value == 3725.0
    assert clock_cell(59.0).sort_key() < clock_cell(600.0).sort_key() < clock_cell(None).sort_key()
