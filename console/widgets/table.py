"""A DataTable keyed by id that keeps raw values, updates only changed cells and sorts numerically.

Why: the console's tables are refreshed many times a second while jobs stream; re-adding rows
would reset the cursor and repaint everything, and sorting on rendered strings puts "10.0" before
"9.0". Cells are `Cell` objects (raw value + display text), so `sort` compares the raw numbers.

Why the cell writes bypass `DataTable.update_cell`: in Textual 8.2 every `update_cell` bumps the
table-wide `_update_count`, which is part of every render cache key (cells, rows, lines), and calls
a full `refresh()`. One progress tick on one job therefore re-rendered every cell of every row
through Rich, and a key press arriving meanwhile waited behind that repaint (Queue screen p95
105–165 ms with 24 streaming jobs). `_write_cells` stores the value, evicts only the cache entries
of the cells it changed and refreshes only those rows, so a batch repaints a few dozen cells and the
cursor's repaint stays cheap. When a new text is wider than its column it falls back to
`update_cell(update_width=True)` (column widths change → everything must be re-laid out anyway).

Why the hold window: even cheap, a batch that touches all 24 rows costs a frame; a key landing
right behind it waited for it. For `hold_after_cursor_s` after a cursor move, cell changes are
coalesced instead of painted, but never for longer than `max_hold_s`, so progress/ETA/state stay
live (~4 Hz while an arrow key is held, the pump's 10 Hz otherwise). Measured on the 2-core box:
Queue key→repaint p95 100–107 ms before, 33–35 ms after (bench/bench_console.py).
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
from textual.geometry import Region
from textual.timer import Timer
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist, RowKey


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
        #: streaming values (a held key still sees ~4 repaints a second).
        self.max_hold_s = 0.2
        self._hold_until = 0.0
        self._held_since: float | None = None
        self._hold_timer: Timer | None = None
        self._held: dict[str, dict[str, Cell]] = {}
        self._sort_dirty = False
        #: False: a header click is left to the screen (HeaderSelected bubbles) instead of sorting here.
        self.sorts_itself = bool(kwargs.pop("sorts_itself", True))
        super().__init__(**kwargs)
        self._columns_spec = list(columns)
        self._cells: dict[str, dict[str, Cell]] = {}
        self.sort_column: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in self._columns_spec:
            self.add_column(label, key=key)

    @property
    def row_ids(self) -> list[str]:
        """Row ids in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def raw(self, row_id: str, column: str) -> Any:
        cell = self._cells.get(row_id, {}).get(column)
        return None if cell is None else cell.value

    def row_cells(self, row_id: str) -> dict[str, Cell]:
        return dict(self._cells.get(row_id, {}))

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
                for rid in [r for r in self._cells if r not in rows]:
                    try:
                        self.remove_row(rid)
                    except RowDoesNotExist:
                        pass
                    self._cells.pop(rid, None)
                    self._held.pop(rid, None)
                    writes += 1
                    structural = True
            for rid, cells in rows.items():
                cells = dict(cells)
                old = self._cells.get(rid)
                if old is None:
                    self.add_row(*(cells.get(k, txt(None)) for k, _ in self._columns_spec), key=rid)
                    self._cells[rid] = cells
                    writes += 1
                    structural = self._sort_dirty = True
                    continue
                for key, _ in self._columns_spec:
                    new = cells.get(key, txt(None))
                    if old.get(key) != new:
                        self._held.setdefault(rid, {})[key] = new
                        old[key] = new
                        writes += 1
                        if key == self.sort_column:
                            self._sort_dirty = True
            if self._held and self._held_since is None:
                self._held_since = time.monotonic()
            wait = self._flush_deadline() - time.monotonic()
            if structural or wait <= 0:
                self._flush(keep, structural)
            elif self._held and self._hold_timer is None:
                self._hold_timer = self.set_timer(wait, self._flush_held)
        return writes

    def _flush_deadline(self) -> float:
        """When held changes must be written: end of the hold window, capped by `max_hold_s`."""
        if self._held_since is None:
            return self._hold_until
        return min(self._hold_until, self._held_since + self.max_hold_s)

    def _flush_held(self) -> None:
        self._hold_timer = None
        wait = self._flush_deadline() - time.monotonic()
        if wait > 0:  # the cursor moved again meanwhile
            self._hold_timer = self.set_timer(wait, self._flush_held)
            return
        with self.app.batch_update():
            self._flush(self.current_id, False)

    def _flush(self, keep: str | None, structural: bool) -> None:
        """Write held cell changes, re-sort if the sort column changed, keep the cursor's row."""
        if self._hold_timer is not None:
            self._hold_timer.stop()
            self._hold_timer = None
        held, self._held = self._held, {}
        self._held_since = None
        if held:
            self._write_cells(held)
        if self.sort_column and self._sort_dirty:
            structural = self._apply_sort() or structural
        self._sort_dirty = False
        if structural:
            self._restore_cursor(keep)

    def watch_cursor_coordinate(self, old_coordinate: Coordinate, new_coordinate: Coordinate) -> None:
        """Open the hold window (see `sync`) whenever the cursor moves."""
        if old_coordinate != new_coordinate and self.hold_after_cursor_s > 0:
            self._hold_until = time.monotonic() + self.hold_after_cursor_s
        super().watch_cursor_coordinate(old_coordinate, new_coordinate)

    def _write_cells(self, changes: Mapping[str, Mapping[str, Cell]]) -> None:
        """Store changed cells and repaint only their lines (see the module docstring for why)."""
        touched: set[tuple[RowKey, ColumnKey]] = set()
        for rid, cells in changes.items():
            row_key = RowKey(rid)
            if row_key not in self._row_locations:
                continue
            for key, new in cells.items():
                column_key = ColumnKey(key)
                column = self.columns.get(column_key)
                if column is None:
                    continue
                if column.auto_width and cell_len(new.text) > column.content_width:
                    # The column must widen: every row's layout changes, so take the full path.
                    self.update_cell(row_key, column_key, new, update_width=True)
                    continue
                self._data[row_key][column_key] = new
                touched.add((row_key, column_key))
        if touched:
            self._invalidate(touched)

    def _invalidate(self, cells: set[tuple[RowKey, ColumnKey]]) -> None:
        """Evict the render caches of `cells` (and of their rows' lines) and refresh those lines.

        Every DataTable cache key holds `_update_count`; leaving it alone keeps all other rows'
        cached renders valid.
        """
        row_keys = {row_key for row_key, _ in cells}
        for row_key in row_keys:
            index = self._row_locations.get(row_key)
            if index is not None:
                self._row_renderable_cache.discard((self._update_count, index))
        top = self.header_height if self.show_header else 0
        ys = {top + y for y, (row_key, _) in enumerate(self._y_offsets) if row_key in row_keys}
        cell_cache = self._cell_render_cache
        for k in [k for k in cell_cache.keys() if (k[0], k[1]) in cells]:
            cell_cache.discard(k)
        row_cache = self._row_render_cache
        for k in [k for k in row_cache.keys() if k[0] in row_keys]:
            row_cache.discard(k)
        line_cache = self._line_cache
        for k in [k for k in line_cache.keys() if k[0] in ys]:
            line_cache.discard(k)
        width = max(self.size.width, self.virtual_size.width)
        for y in sorted(ys):
            self._refresh_region(Region(0, y, width, 1))

    def _restore_cursor(self, row_id: str | None) -> None:
        """Put the cursor back on `row_id` if the rows moved under it."""
        if row_id is None or row_id not in self._cells:
            return
        try:
            index = self.get_row_index(row_id)
        except RowDoesNotExist:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index)

    def update_rows(self, rows: Mapping[str, Mapping[str, Cell]]) -> int:
        """Update/insert only the given rows (others stay)."""
        return self.sync(rows, remove_missing=False)

    def drop(self, row_ids: Iterable[str]) -> None:
        """Remove rows by id (unknown ids are ignored); the cursor keeps its row if it survives."""
        keep = self.current_id
        for rid in row_ids:
            if rid in self._cells:
                self.remove_row(rid)
                self._cells.pop(rid, None)
                self._held.pop(rid, None)
        self._restore_cursor(keep)

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort numerically by `column`; same column again flips the order.

        An explicit sort leaves the cursor at its index (top stays top, as the Compare screen
        expects); re-sorts caused by data changes in `sync` keep the cursor on its row id.
        """
        if column not in {k for k, _ in self._columns_spec}:
            raise ValueError(f"unknown column {column!r}; columns are {[k for k, _ in self._columns_spec]}")
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        self._sort_dirty = True
        self._flush(None, False)  # held cell changes first, so the sort sees the newest values

    @staticmethod
    def _sort_key(cell: Any) -> tuple[int, Any]:
        return cell.sort_key() if isinstance(cell, Cell) else (1, str(cell))

    def _apply_sort(self) -> bool:
        """Re-sort if the order changed; returns whether rows moved (a sort repaints everything)."""
        if self.sort_column is None:
            return False
        column = ColumnKey(self.sort_column)
        missing = (2, 0)
        wanted = sorted(self._data, reverse=self.sort_reverse,
                        key=lambda rk: self._sort_key(self._data[rk].get(column)) if column in self._data[rk]
                        else missing)
        if all(self._row_locations.get(rk) == i for i, rk in enumerate(wanted)):
            return False
        self.sort(self.sort_column, key=self._sort_key, reverse=self.sort_reverse)
        return True

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        if not self.sorts_itself:
            return  # the screen sorts (it holds more rows than the table shows): the event bubbles to it
        event.stop()
        self.sort_by(str(event.column_key.value))
