"""Stocks screen: every symbol with rows, dates, difficulty, naive MAE%, and the decision at a horizon.

Why it is the home screen: every action starts from a set of symbols. Selection survives
filtering, presets pick the named symbol sets (engine.symbols), and the run form reads `selected`.

Why a horizon: a decision is made at one horizon, and numbers from different horizons are never
ranked together. "Best" is the decision at the horizon the user chooses (`h` cycles through the
horizons that have one; default: the most recent comparison's), and its score says on which
validation windows it was measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Static

from console.messages import QueueJobRequested, SelectionChanged, StartRunRequested
from console.review_data import StockRow
from console.screens.base import read_for
from console.screens.filter_keys import FilterScreen
from console.widgets.table import Cell, KeyedTable, num, txt
from console.words import plural
from engine.symbols import PRIORITY_SYMBOLS

FILTER_PLACEHOLDER = "/ filter symbols or tier…"
TIER_STYLE = {"easy": "green", "medium": "yellow", "hard": "red", "extreme": "bold red"}

COLUMNS = (
    ("sel", "✓"), ("symbol", "Symbol"), ("rows", "Rows"), ("start", "From"), ("end", "To"),
    ("tier", "Tier"), ("naive", "Naive% h64 pre-test"), ("best", "Best"), ("score", "Val MAE%"),
)


class StocksScreen(FilterScreen):
    MODE: ClassVar[str] = "stocks"
    FILTER_ID: ClassVar[str] = "#stock-filter"
    EDITING_PLACEHOLDER: ClassVar[str] = "type to filter · enter done · space selects the first · esc clears"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_selected", "Select", id="stocks-toggle"),
        # Left out of the footer so that `q Quit` fits at 80 columns: `/` is on the filter bar, the
        # a/x presets are named by the first-run hint, `h` by the status line; all are in the keys
        # panel (?) and the palette.
        Binding("slash", "focus_filter", "Filter", key_display="/", id="stocks-filter", show=False),
        Binding("p", "preset('priority')", "Priority", id="stocks-priority"),
        Binding("a", "preset('all')", "All", id="stocks-all", show=False),
        Binding("x", "preset('none')", "None", id="stocks-none", show=False),
        Binding("r", "start_run", "Run…", id="stocks-run"),
        Binding("b", "quick_baseline", "Baseline", id="stocks-baseline"),
        Binding("h", "next_horizon", "Horizon", id="stocks-horizon", show=False),  # the status line says "h: next"
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: set[str] = set()
        self._told: list[str] = []  # the selection the app was last told (SelectionChanged)
        self.rows: dict[str, StockRow] = {}
        self.loaded = False
        self.horizon: int | None = None  # None: the most recent comparison's

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="stocks-bar", classes="toolbar"):
            yield Input(placeholder=FILTER_PLACEHOLDER, id="stock-filter")
            yield Static("", id="stocks-status", classes="status")
        yield KeyedTable(COLUMNS, id="stocks-table")
        yield Static("", id="stocks-empty", classes="empty")
        yield Static("", id="stocks-hint", classes="detail")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        # Rows a filter hid come back in symbol order, not appended at the end (a header click sorts otherwise).
        self.table.sort_by("symbol")
        self.reload()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#stocks-table", KeyedTable)

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="stocks-load")
    async def _load(self) -> None:
        try:
            rows = await read_for(self, self.services.stocks(self.horizon))
        except Exception as exc:  # noqa: BLE001 - show and keep the screen alive
            self.notify_error(exc)
            rows = []
        self.rows = {r.symbol: r for r in rows}
        self.selected &= set(self.rows)
        self.loaded = True
        self._render_rows()

    def _cells(self, r: StockRow) -> dict[str, Cell]:
        sel = r.symbol in self.selected
        return {
            "sel": Cell(sel, "●" if sel else "·", style="bold green" if sel else "dim"),
            "symbol": txt(r.symbol, style="bold" if r.source == "shipped" else "bold cyan"),
            "rows": num(r.rows, "{:d}"),
            "start": txt(r.start),
            "end": txt(r.end),
            "tier": Cell(r.tier, r.tier, style=TIER_STYLE.get(r.tier, "dim")),
            "naive": Cell(r.baseline_mae_pct, (f"{r.baseline_mae_pct:.3f} "
                                               f"{'?' if r.baseline_windows is None else r.baseline_windows}w"
                                               if r.baseline_mae_pct is not None else "—"),
                          style="" if r.baseline_mae_pct is not None else "dim", justify="right"),
            "best": txt(r.best_model or "—", style="" if r.best_model else "dim"),
            "score": Cell(r.best_score, (f"{r.best_score:.3f} {r.best_windows.split(' ', 1)[-1]}"
                                         if r.best_score is not None else (r.best_windows or "—")),
                          style="" if r.best_score is not None else "dim", justify="right"),
        }

    _rendered_filter = ""

    def _filter_text(self) -> str:
        return self.query_one("#stock-filter", Input).value.strip().upper()

    def _visible(self) -> list[StockRow]:
        q = self._filter_text()
        return [r for r in self.rows.values() if not q or q in r.symbol or q == r.tier.upper()]

    def _render_rows(self) -> None:
        self._rendered_filter = self._filter_text()
        visible = self._visible()
        self.table.sync({r.symbol: self._cells(r) for r in visible})
        empty = self.query_one("#stocks-empty", Static)
        if not self.rows:
            dirs = ", ".join(str(d) for d in self.services.data_dirs)
            empty.update(f"No data yet: no SYMBOL.csv in {dirs}. Run `forecast-console data synth` or drop CSVs in.")
        elif not visible:
            empty.update("No symbol matches the filter.")
        else:
            empty.update("")
        empty.display = not visible
        hint = self.query_one("#stocks-hint", Static)
        if self.rows and all(r.baseline_mae_pct is None for r in self.rows.values()):
            hint.update("Start here: select symbols (space, or p/a presets) and press b for a baseline — it fills "
                        "Tier and Naive% (naive MAE% at 64 steps). Then r to train/validate/compare.")
        elif self.rows and not any(r.best_model for r in self.rows.values()):
            hint.update("Next: r → train a model (tiny preset), then validate it; Best/Score fill in from its pick.")
        else:
            hint.update("")
        hint.display = bool(str(hint.content))
        self._update_status()

    def _update_status(self) -> None:
        sel = sorted(self.selected)
        if sel != self._told:  # every change of the selection ends here
            self._told = sel
            self.post_message(SelectionChanged(sel))
        shown = ", ".join(sel[:6]) + (" …" if len(sel) > 6 else "")
        h = next((r.horizon for r in self.rows.values() if r.horizon is not None), None)
        at = "" if h is None else (f" · Best at h={h}" + (" (latest compare)" if self.horizon is None else "")
                                   + (" · h: next" if len(self.services.horizons) > 1 else ""))
        self.query_one("#stocks-status", Static).update(
            f"{len(sel)} selected{': ' + shown if sel else ''} · {plural(len(self.rows), 'symbol')}{at}"
        )

    def action_next_horizon(self) -> None:
        hs = self.services.horizons
        if not hs:
            self.notify("no decisions yet: validate or compare first", severity="warning")
            return
        cur = next((r.horizon for r in self.rows.values() if r.horizon is not None), hs[0])
        self.horizon = hs[(hs.index(cur) + 1) % len(hs)] if cur in hs else hs[0]
        self.reload()

    @on(Input.Changed, "#stock-filter")
    def _filter_changed(self) -> None:
        self._render_rows()

    # Filtering from the keyboard never moves the focus (console.screens.filter_keys): `/`, then the
    # keys typed reach this screen in order; space ends filtering and selects the first match.
    def filter_key(self, event: events.Key) -> bool:
        if event.key != "space":
            return False
        self.end_filter()
        self.action_toggle_selected()
        return True

    @on(Input.Submitted, "#stock-filter")
    def _filter_done(self) -> None:
        """Enter in the filter after it was clicked into (typing then went to the field itself)."""
        self.end_filter()

    def apply_filter_now(self) -> None:
        self._catch_up()

    def _catch_up(self) -> bool:
        """Render the filter as typed now if its Changed messages are still queued; True if it had to."""
        if self._filter_text() == self._rendered_filter:
            return False
        self._render_rows()
        return True

    def toggle(self, symbol: str) -> None:
        self.selected.symmetric_difference_update({symbol})
        if symbol in self.rows:
            self.table.update_rows({symbol: self._cells(self.rows[symbol])})
        self._update_status()

    def action_toggle_selected(self) -> None:
        if self._catch_up() and self.table.row_count:
            self.table.move_cursor(row=0)  # the rows changed under the cursor: the first match, as Enter does
        sym = self.table.current_id
        if sym:
            self.toggle(sym)
            if self.table.cursor_row < self.table.row_count - 1:
                self.table.move_cursor(row=self.table.cursor_row + 1)

    @on(DataTable.RowSelected, "#stocks-table")
    def _row_clicked(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.toggle(str(event.row_key.value))

    def action_preset(self, name: str) -> None:
        if name == "priority":
            self.selected = {s for s in PRIORITY_SYMBOLS if s in self.rows}
        elif name == "all":
            self.selected = set(self.rows)
        else:
            self.selected = set()
        self._render_rows()

    def action_start_run(self, kind: str | None = None) -> None:
        self.post_message(StartRunRequested(kind))

    def action_quick_baseline(self) -> None:
        self.post_message(QueueJobRequested("baseline", sorted(self.selected)))

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Select priority symbols", "Preset: the 11 priority symbols", lambda: self.action_preset("priority"))
        yield ("Select all symbols", "Preset: every symbol", lambda: self.action_preset("all"))
        yield ("Clear selection", "Deselect all symbols", lambda: self.action_preset("none"))
        yield ("Baseline selected symbols", "Queue a naive baseline job", self.action_quick_baseline)
