"""A DataTable keyed by id that keeps raw values, updates only changed cells and sorts numerically.

Why: the console's tables are refreshed many times a second while jobs stream; re-adding rows
would reset the cursor and repaint everything, and sorting on rendered strings puts "10.0" before
"9.0". Cells are `Cell` objects (raw value + display text), so `sort` compares the raw numbers.

Only Textual's public DataTable API is used (`add_row`, `remove_row`, `update_cell`, `sort`,
`ordered_rows`, `rows`, `columns`). A `update_cell` invalidates the table's render caches and
refreshes it; the writes of one `sync` happen inside one `app.batch_update()`, so a batch of N
changed cells costs one repaint of the visible rows, not N. The state this class keeps itself is in
names without a leading underscore (Textual's private namespace is left to Textual).

Why the hold window: a batch that touches all 24 rows costs a frame; a key landing right behind it
waited for it, and the cursor's own repaint is cheap only while the row caches are warm. For
`hold_after_cursor_s` after a cursor move, cell changes are coalesced instead of painted, but never
for longer than `max_hold_s`, so progress/ETA/state stay live (~5 Hz while an arrow key is held, the
pump's rate otherwise). Key→repaint and CPU figures: bench/bench_console.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.coordinate import Coordinate
from textual.timer import Timer
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist, RowKey

from console.words import clock_text


@dataclass(frozen=True)
class Cell:
    """A table cell: `value` is what sorting sees, `text` what the user sees."""

    value: Any
    text: str
    style: str = ""
    justify: str = "left"

    def __rich__(self) -> Text:
        return Text(self.text, style=self.style, justify=self.justify)  # type: ignore[arg-type]

    def sort_key(self) -> tuple[int, Any]:
        """None sorts last; numbers numerically; everything else as text."""
        v = self.value
        if v is None:
            return (2, 0)
        if isinstance(v, bool):
            return (0, int(v))
        if isinstance(v, int | float):
            return (0, float(v))
        return (1, str(v).lower())


def num(value: float | int | None, fmt: str = "{:.2f}", style: str = "") -> Cell:
    """A right-aligned numeric cell; None shows as an em dash but keeps sorting last."""
    if value is None:
        return Cell(None, "—", style="dim", justify="right")
    return Cell(value, fmt.format(value), style=style, justify="right")


def clock_cell(seconds: float | None) -> Cell:
    """`1m38s`, `1h04m` (`words.clock_text`), right-aligned, sorted by the seconds; None is the dash."""
    if seconds is None:
        return num(None)
    seconds = max(0.0, float(seconds))
    return Cell(seconds, clock_text(seconds), justify="right")


def counted_cell(value: float | None, windows: int | None, style: str = "") -> Cell:
    """`3.364 248w`: a metric with the number of windows it was computed on (`?w` when the record
    does not say); sorted by the value. Right-aligned like `num`, the em dash of a missing value too."""
    if value is None:
        return Cell(None, "—", style="dim", justify="right")
    return Cell(value, f"{value:.3f} {'?' if windows is None else windows}w", style=style, justify="right")


def txt(value: Any, style: str = "") -> Cell:
    return Cell(value, "" if value is None else str(value), style=style)


class KeyedTable(DataTable):
    """DataTable whose rows are synced from a mapping id -> {column: Cell}."""

    DEFAULT_CSS = """
    KeyedTable {
        height: 1fr;
    }
    """

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        #: Seconds after a cursor move during which streaming cell changes are held back.
        self.hold_after_cursor_s = 0.15
        #: Held changes are written at least this often, so a held-down arrow key cannot freeze
        #: streaming values (a held key still sees ~5 repaints a second).
        self.max_hold_s = 0.2
        self.hold_until = 0.0
        self.held_since: float | None = None
        self.hold_timer: Timer | None = None
        #: Changed cells not written to the DataTable yet (row id -> column -> cell).
        self.held: dict[str, dict[str, Cell]] = {}
        self.sort_dirty = False
        #: False: a header click is left to the screen (HeaderSelected bubbles) instead of sorting here.
        self.sorts_itself = bool(kwargs.pop("sorts_itself", True))
        #: Streaming cell changes are written at most this often (0: at once). A write repaints every
        #: visible row (see the module docstring), so a table fed by the update pump sets 1-2 s: its
        #: figures tick like `top`; rows coming, going or moving (sort column changed) are written at once.
        self.stream_interval_s = float(kwargs.pop("stream_interval_s", 0.0))
        self.flushed_at = -1e9
        super().__init__(**kwargs)
        self.columns_spec = list(columns)
        #: The newest cells of every row (what `raw`/`row_cells` return and sorting compares).
        self.cell_values: dict[str, dict[str, Cell]] = {}
        self.sort_column: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in self.columns_spec:
            self.add_column(label, key=key)

    @property
    def row_ids(self) -> list[str]:
        """Row ids in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def raw(self, row_id: str, column: str) -> Any:
        cell = self.cell_values.get(row_id, {}).get(column)
        return None if cell is None else cell.value

    def row_cells(self, row_id: str) -> dict[str, Cell]:
        return dict(self.cell_values.get(row_id, {}))

    @property
    def current_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return None if key.value is None else str(key.value)

    def sync(self, rows: Mapping[str, Mapping[str, Cell]], *, remove_missing: bool = True) -> int:
        """Make the table show `rows`; touch only what changed. Returns the number of cell writes.

        The cursor stays on the same row id when rows are removed, added or re-sorted. Pure cell
        changes that arrive within `hold_after_cursor_s` of a cursor move are held back (and
        coalesced) until that window ends, so the cursor's repaint is not queued behind a repaint
        of every streaming row; `raw`/`row_cells` always return the newest values.
        """
        writes = 0
        structural = False
        with self.app.batch_update():
            keep = self.current_id
            if remove_missing:
                gone = [r for r in self.cell_values if r not in rows]
                if gone and len(gone) == len(self.cell_values):
                    self.clear()  # everything goes (a new filter): one call, not one per row
                    self.cell_values.clear()
                    self.held.clear()
                    writes += len(gone)
                    structural = True
                    gone = []
                for rid in gone:
                    try:
                        self.remove_row(rid)
                    except RowDoesNotExist:
                        pass
                    self.cell_values.pop(rid, None)
                    self.held.pop(rid, None)
                    writes += 1
                    structural = True
            for rid, cells in rows.items():
                cells = dict(cells)
                old = self.cell_values.get(rid)
                if old is None:
                    self.add_row(*(cells.get(k, txt(None)) for k, _ in self.columns_spec), key=rid)
                    self.cell_values[rid] = cells
                    writes += 1
                    structural = self.sort_dirty = True
                    continue
                for key, _ in self.columns_spec:
                    new = cells.get(key, txt(None))
                    if old.get(key) != new:
                        self.held.setdefault(rid, {})[key] = new
                        old[key] = new
                        writes += 1
                        if key == self.sort_column:
                            self.sort_dirty = True
            if self.held and self.held_since is None:
                self.held_since = time.monotonic()
            wait = self._flush_deadline() - time.monotonic()
            if structural or self.sort_dirty or wait <= 0:  # rows that move (a job started/ended) go at once
                self._flush(keep, structural)
            elif self.held and self.hold_timer is None:
                self.hold_timer = self.set_timer(wait, self._flush_held)
        return writes

    def _flush_deadline(self) -> float:
        """When held changes must be written: end of the hold window, capped by `max_hold_s`, and not
        sooner than `stream_interval_s` after the last write."""
        hold = self.hold_until if self.held_since is None else min(self.hold_until, self.held_since + self.max_hold_s)
        return max(hold, self.flushed_at + self.stream_interval_s)

    def _flush_held(self) -> None:
        self.hold_timer = None
        wait = self._flush_deadline() - time.monotonic()
        if wait > 0:  # the cursor moved again meanwhile
            self.hold_timer = self.set_timer(wait, self._flush_held)
            return
        with self.app.batch_update():
            self._flush(self.current_id, False)

    def _flush(self, keep: str | None, structural: bool) -> None:
        """Write held cell changes, re-sort if the sort column changed, keep the cursor's row."""
        if self.hold_timer is not None:
            self.hold_timer.stop()
            self.hold_timer = None
        held, self.held = self.held, {}
        self.held_since = None
        if held:
            self._write_cells(held)
            self.flushed_at = time.monotonic()
        if self.sort_column and self.sort_dirty:
            structural = self._apply_sort() or structural
        self.sort_dirty = False
        if structural:
            self._restore_cursor(keep)

    def watch_cursor_coordinate(self, old_coordinate: Coordinate, new_coordinate: Coordinate) -> None:
        """Open the hold window (see `sync`) whenever the cursor moves."""
        if old_coordinate != new_coordinate and self.hold_after_cursor_s > 0:
            self.hold_until = time.monotonic() + self.hold_after_cursor_s
        super().watch_cursor_coordinate(old_coordinate, new_coordinate)

    def _write_cells(self, changes: Mapping[str, Mapping[str, Cell]]) -> None:
        """Write changed cells with `update_cell` (the caller holds a batch: one repaint for all)."""
        for rid, cells in changes.items():
            if RowKey(rid) not in self.rows:
                continue
            for key, new in cells.items():
                column = self.columns.get(ColumnKey(key))
                if column is None:
                    continue
                # A text wider than its column widens it (every row's layout changes then). The width
                # is set here as well: DataTable measures it only when idle, and a frame drawn before
                # that kept the old width in its cell cache (`medium` shown as `medi` until the row's
                # next change).
                widen = column.auto_width and cell_len(new.text) > column.content_width
                if widen:
                    column.content_width = cell_len(new.text)
                self.update_cell(rid, key, new, update_width=widen)

    def _restore_cursor(self, row_id: str | None) -> None:
        """Put the cursor back on `row_id` if the rows moved under it."""
        if row_id is None or row_id not in self.cell_values:
            return
        try:
            index = self.get_row_index(row_id)
        except RowDoesNotExist:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index)

    def replace(self, rows: Mapping[str, Mapping[str, Cell]]) -> None:
        """Show exactly `rows`, in their order (a screen that sorts and filters itself): one `clear`
        and one `add_row` each, instead of a removal per row gone and a re-sort. The cursor stays on
        its row id when that row is still shown, else goes to the top."""
        keep = self.current_id
        with self.app.batch_update():
            self.clear()
            self.cell_values.clear()
            self.held.clear()
            self.append(rows)
            self._restore_cursor(keep)

    def append(self, rows: Mapping[str, Mapping[str, Cell]]) -> None:
        """Add `rows` after the shown ones, in their order, without re-sorting (a screen that sorts
        itself fills a long table in steps); ids already shown are skipped."""
        with self.app.batch_update():
            for rid, cells in rows.items():
                if rid in self.cell_values:
                    continue
                cells = dict(cells)
                self.add_row(*(cells.get(k, txt(None)) for k, _ in self.columns_spec), key=rid)
                self.cell_values[rid] = cells

    def update_rows(self, rows: Mapping[str, Mapping[str, Cell]]) -> int:
        """Update/insert only the given rows (others stay)."""
        return self.sync(rows, remove_missing=False)

    def drop(self, row_ids: Iterable[str]) -> None:
        """Remove rows by id (unknown ids are ignored); the cursor keeps its row if it survives."""
        keep = self.current_id
        for rid in row_ids:
            if rid in self.cell_values:
                self.remove_row(rid)
                self.cell_values.pop(rid, None)
                self.held.pop(rid, None)
        self._restore_cursor(keep)

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort numerically by `column`; same column again flips the order.

        An explicit sort leaves the cursor at its index (top stays top, as the Compare screen
        expects); re-sorts caused by data changes in `sync` keep the cursor on its row id.
        """
        if column not in {k for k, _ in self.columns_spec}:
            raise ValueError(f"unknown column {column!r}; columns are {[k for k, _ in self.columns_spec]}")
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        self.sort_dirty = True
        self._flush(None, False)  # held cell changes first, so the sort sees the newest values

    @staticmethod
    def _sort_key(cell: Any) -> tuple[int, Any]:
        return cell.sort_key() if isinstance(cell, Cell) else (1, str(cell))

    def _apply_sort(self) -> bool:
        """Re-sort if the order changed; returns whether rows moved (a sort repaints everything)."""
        if self.sort_column is None:
            return False
        column, missing = self.sort_column, (2, 0)
        shown = self.row_ids
        wanted = sorted(shown, reverse=self.sort_reverse,
                        key=lambda rid: self._sort_key(self.cell_values[rid][column])
                        if column in self.cell_values.get(rid, {}) else missing)
        if wanted == shown:
            return False
        self.sort(self.sort_column, key=self._sort_key, reverse=self.sort_reverse)
        return True

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        if not self.sorts_itself:
            return  # the screen sorts (it holds more rows than the table shows): the event bubbles to it
        event.stop()
        self.sort_by(str(event.column_key.value))
