"""A DataTable keyed by id that keeps raw values, updates only changed cells and sorts numerically.

Why: the console's tables are refreshed many times a second while jobs stream; re-adding rows
would reset the cursor and repaint everything, and sorting on rendered strings puts "10.0" before
"9.0". Cells are `Cell` objects (raw value + display text), so `sort` compares the raw numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist


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
        """Make the table show `rows`; touch only what changed. Returns the number of cell writes."""
        writes = 0
        with self.app.batch_update():
            if remove_missing:
                for rid in [r for r in self._cells if r not in rows]:
                    try:
                        self.remove_row(rid)
                    except RowDoesNotExist:
                        pass
                    self._cells.pop(rid, None)
                    writes += 1
            added = False
            for rid, cells in rows.items():
                cells = dict(cells)
                old = self._cells.get(rid)
                if old is None:
                    self.add_row(*(cells.get(k, txt(None)) for k, _ in self._columns_spec), key=rid)
                    self._cells[rid] = cells
                    writes += 1
                    added = True
                    continue
                for key, _ in self._columns_spec:
                    new = cells.get(key, txt(None))
                    prev = old.get(key)
                    if prev != new:
                        # Re-measuring columns re-renders every row; only do it when the text grew.
                        grow = prev is None or len(new.text) > len(prev.text)
                        self.update_cell(rid, key, new, update_width=grow)
                        old[key] = new
                        writes += 1
            if self.sort_column and (added or writes):
                self._apply_sort()
        return writes

    def update_rows(self, rows: Mapping[str, Mapping[str, Cell]]) -> int:
        """Update/insert only the given rows (others stay)."""
        return self.sync(rows, remove_missing=False)

    def drop(self, row_ids: Iterable[str]) -> None:
        for rid in row_ids:
            if rid in self._cells:
                self.remove_row(rid)
                self._cells.pop(rid, None)

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort numerically by `column`; same column again flips the order."""
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column = column
        self.sort_reverse = reverse
        self._apply_sort()

    def _apply_sort(self) -> None:
        if self.sort_column is None:
            return
        self.sort(self.sort_column, key=lambda c: c.sort_key() if isinstance(c, Cell) else (1, str(c)),
                  reverse=self.sort_reverse)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))
