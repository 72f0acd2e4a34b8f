"""Runs screen: every tracked run (train, validate, sweep trials), filterable and sortable, with a
detail pane (config, metrics, loss curve, artifacts, which pick/comparison/promotion uses it) and
export of the filtered table to CSV or markdown under `<workspace>/reports/`.

Why the screen sorts and the table only shows the first `SHOW_MAX` rows: a workspace holds
thousands of runs, and a DataTable pays for every row it holds (adding 1 000 rows took ~0.8 s on
the 2-core box). The filter and the sort run over *all* runs in Python, the table shows the top
of that order, and the status line says how many matched and how many are shown, so a sort by
Val MAE% is the best of all runs, not of the newest page. Every MAE% names its windows ("12w"). `f` opens the Forecast view: the run's own job's forecasts
(a validate run), else those of the pick/comparison that uses it (a training run's adapter).

Why it stays quick with 10k runs: the runs are read on the console's I/O thread (every key works
meanwhile), with each row's filter text built there once. On opening, the newest `FIRST_ROWS` runs
(the top of the default order) are read and drawn first, then the whole list; the table is filled
`FILL_CHUNK` rows at a time with the loop free between steps (a DataTable measures every cell it
is given), and the status line says how many rows are shown of how many while it fills. A sort or
filter given meanwhile applies to the rows read so far and again to all of them once read. A
filter is applied a moment after the typing stops, and a new filter or sort replaces the table's
rows (`KeyedTable.replace`) instead of a removal per row. The filter is typed without moving the
focus (console.screens.filter_keys: `/` then letters typed fast all reach the filter).

Why the screen asks the app to freeze the heap once it has first filled (`app.freeze_heap`, the
app's one gc.freeze policy): a full collection scans every tracked object, ~120k with the table
filled (the table's cells and render caches on top of the app's), and the first one came a few
seconds after the screen filled, so a key pressed then waited for it (the ~170 ms keys
bench_console printed). Its rows live as long as the console.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from console import run_browser as rb
from console.screens.base import read_for
from console.screens.filter_keys import FilterScreen
from console.screens.forecast_view import ForecastRequested
from console.state_style import state_cell
from console.widgets.loss_chart import LossChart
from console.widgets.table import Cell, KeyedTable, clock_cell, counted_cell, num, txt
from console.words import clipped, model_label, plural
from store.run_listing import label_windows
from store.workspace import Workspace

#: What fits in 120 columns: the model carries its preset (`toto`, `toto·base`, as on Compare and
#: Configs), the run id heads the detail pane (and is matched by the filter and exported), and "Used
#: by" is cut with "…" at USED_WIDTH (the detail lists every use). A column cut by the screen's edge
#: read "made pick h=1" for h=16.
COLUMNS = (
    ("when", "When (UTC)"), ("model", "Model"), ("symbol", "Symbol"), ("horizon", "H"),
    ("kind", "Kind"), ("state", "State"), ("val", "Val MAE%"), ("test", "Test MAE%"), ("loss", "Val loss"),
    ("dur", "Time"), ("used", "Used by"),
)
USED_WIDTH = 16
SORTABLE = [c for c, _ in COLUMNS]
#: Rows the table holds at most (the top of the sorted, filtered list; see the module docstring).
SHOW_MAX = 300
#: Runs read and drawn first on opening (newest first: the default order's top; a tall screenful).
FIRST_ROWS = 60
#: Rows added to the table per step while it fills up to SHOW_MAX, and the pause between steps.
FILL_CHUNK = 60
FILL_STEP_S = 0.02
#: A detail is read this long after the cursor stops (holding an arrow key reads nothing).
DETAIL_DELAY_S = 0.15
#: The filter is applied this long after the last key typed into it (typing stays fluid).
FILTER_DELAY_S = 0.12


def run_cells(r: rb.RunRow) -> dict[str, Cell]:
    return {
        "when": Cell(r.created_at, time.strftime("%m-%d %H:%M", time.gmtime(r.created_at))),
        "model": txt(model_label(r.model, r.preset)), "symbol": txt(r.symbol, style="bold"),
        "horizon": num(r.horizon, "{:d}"), "kind": txt(r.kind), "state": state_cell(r.state),
        "val": counted_cell(r.val_mae_pct, label_windows(r.val_windows)),
        "test": counted_cell(r.test_mae_pct, label_windows(r.test_windows)),
        "loss": num(r.val_loss, "{:.4f}"),
        "dur": clock_cell(r.duration_s),
        "used": Cell(r.used, clipped(r.used, USED_WIDTH), style="bold green" if r.used else ""),
    }


#: How each column sorts (the same order Cell.sort_key gives the cells the table shows).
SORT_VALUE: dict[str, Callable[[rb.RunRow], Any]] = {
    "when": lambda r: r.created_at, "model": lambda r: model_label(r.model, r.preset), "symbol": lambda r: r.symbol,
    "horizon": lambda r: r.horizon, "kind": lambda r: r.kind,
    "state": lambda r: r.state, "val": lambda r: r.val_mae_pct, "test": lambda r: r.test_mae_pct,
    "loss": lambda r: r.val_loss, "dur": lambda r: r.duration_s, "used": lambda r: r.used,
}


def sorted_rows(rows: Iterable[rb.RunRow], column: str, reverse: bool) -> list[rb.RunRow]:
    key = SORT_VALUE[column]
    return sorted(rows, key=lambda r: Cell(key(r), "").sort_key(), reverse=reverse)


class RunsScreen(FilterScreen):
    MODE: ClassVar[str] = "runs"
    FILTER_ID: ClassVar[str] = "#runs-filter"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    DEFAULT_CSS = """
    RunsScreen #runs-filter {
        width: 1fr;
        height: 1;
        border: none;
        padding: 0 1;
    }
    RunsScreen #runs-filter.-editing {
        background: $accent 30%;
    }
    RunsScreen #runs-table {
        height: 1fr;
    }
    RunsScreen #runs-detail {
        height: 11;
        border-top: solid $primary-background-lighten-2;
    }
    RunsScreen #runs-detail-text {
        width: 1fr;
        padding: 0 1;
        overflow-y: auto;
    }
    RunsScreen #runs-curve {
        width: 1fr;
        min-height: 6;
    }
    RunsScreen.-narrow #runs-curve {
        display: none;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter", key_display="/", id="runs-filter"),
        Binding("s", "sort_next", "Sort", id="runs-sort"),
        Binding("o", "flip_order", "Order", show=False, id="runs-order"),
        Binding("f", "forecast", "Forecast", id="runs-forecast"),
        Binding("e", "export('csv')", "CSV", id="runs-export-csv"),
        Binding("m", "export('md')", "Markdown", show=False, id="runs-export-md"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data = rb.RunsData()
        self.by_id: dict[str, rb.RunRow] = {}
        self.matched: list[rb.RunRow] = []
        self.sort_column = "when"
        self.sort_reverse = True
        self.loaded = False  # some rows read (maybe only the newest: see `complete`)
        self.complete = False  # every run read
        #: Rows of the current order still to be added to the table (filled in steps).
        self.to_fill: list[rb.RunRow] = []
        self._fill_timer: Timer | None = None
        self._frozen = False  # the app froze the heap once this screen filled (see the module docstring)
        self._reads = 0  # reads running (a cancelled one ends after its replacement starts)
        #: run id -> the text the filter matches words against (built with the rows, off the loop).
        self.hay: dict[str, str] = {}
        self._filter_timer: Timer | None = None
        self._detail_timer: Timer | None = None
        self._detail_id: str | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="runs-bar", classes="toolbar"):
            yield Input(placeholder="/ filter: words (model, symbol, kind, state, h=16, pick…)", id="runs-filter")
            yield Static("loading runs…", id="runs-status", classes="status")
        yield KeyedTable(COLUMNS, id="runs-table", sorts_itself=False)
        with Horizontal(id="runs-detail"):
            yield Static("", id="runs-detail-text")
            yield LossChart(id="runs-curve")

    def on_mount(self) -> None:
        self.table.focus()
        self.reload()  # read while the screen is laid out and drawn for the first time

        # The status says counts, "loading…" and the order: at 80 columns the app's half-width status
        # cut it after the counts; the filter field keeps a quarter (20 columns).
        self.query_one("#runs-status", Static).styles.max_width = "75%"

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#runs-table", KeyedTable)

    def reload(self) -> None:
        if self._reads and not self.complete:
            return  # the first read (on mount) runs: not a second one for the resume that follows it
        if self.complete:  # shown again: the rows it has are drawn first, as
            self.call_after_refresh(self._load)  # the newest are on opening (see `_load`)
        else:
            self._load()

    @property
    def filling(self) -> bool:
        """Not every run read yet, or the table not filled up yet."""
        return not self.complete or bool(self.to_fill)

    @work(exclusive=True, group="runs-load")
    async def _load(self) -> None:
        store = self.services.store
        if store is None and not self.fc_app.ready.is_set():
            return  # the workspace is still opening: "loading runs…" stays, WorkspaceOpened reloads
        self._reads += 1
        try:
            if not self.loaded and not self._words() and (self.sort_column, self.sort_reverse) == ("when", True):
                first = await read_for(self, self.services.call(_read_runs, store, FIRST_ROWS))
                self._take(*first, complete=False)
                # The whole list is read once these rows are on screen: building 10k rows on the I/O
                # thread holds the interpreter lock most of the time and would hold back that frame.
                painted = asyncio.Event()
                self.call_after_refresh(painted.set)
                await read_for(self, painted.wait())
            data, hay = await read_for(self, self.services.call(_read_runs, store))
        except Exception as exc:  # noqa: BLE001 - show and keep the screen alive
            self.notify_error(exc)
            data, hay = rb.RunsData(), {}
        finally:
            self._reads -= 1
        self._take(data, hay, complete=True)

    def _take(self, data: rb.RunsData, hay: dict[str, str], complete: bool) -> None:
        self.data, self.hay = data, hay
        self.by_id = {r.run_id: r for r in data.rows}
        self.loaded, self.complete = True, complete
        self._render_rows()

    def _words(self) -> list[str]:
        return self.query_one("#runs-filter", Input).value.lower().split()

    def _render_rows(self) -> None:
        words = self._words()
        if words:
            rows = [r for r in self.data.rows if all(w in self.hay.get(r.run_id, "") for w in words)]
        else:
            rows = list(self.data.rows)
        self.matched = sorted_rows(rows, self.sort_column, self.sort_reverse)
        wanted = self.matched[:SHOW_MAX]
        table = self.table
        shown = table.row_ids
        if shown and [r.run_id for r in wanted[:len(shown)]] == shown:
            # the rows shown stay, in the same order (the newest first, now read with all the rest):
            # only changed cells are written, the rest is added after them
            table.update_rows({r.run_id: run_cells(r) for r in wanted[:len(shown)]})
            self.to_fill = wanted[len(shown):]
        else:  # the first step holds the cursor's row, so that it stays on it (a reload when a job ends)
            at = next((i for i, r in enumerate(wanted) if r.run_id == table.current_id), 0)
            first = max(FILL_CHUNK, at + 1)
            table.replace({r.run_id: run_cells(r) for r in wanted[:first]})
            self.to_fill = wanted[first:]
        table.sort_column, table.sort_reverse = self.sort_column, self.sort_reverse  # shown in this order
        self._schedule_fill()
        self._update_status()
        self._schedule_detail()

    def _schedule_fill(self) -> None:
        if self._fill_timer is not None:
            self._fill_timer.stop()
            self._fill_timer = None
        if self.to_fill:
            self._fill_timer = self.set_timer(FILL_STEP_S, self._fill_step)
        elif self.complete and not self._frozen:  # filled for the first time: see the module docstring
            self._frozen = True
            self.fc_app.freeze_heap()

    def _fill_step(self) -> None:
        """Add the next rows of the current order (keys typed meanwhile were handled before this)."""
        step, self.to_fill = self.to_fill[:FILL_CHUNK], self.to_fill[FILL_CHUNK:]
        self.table.append({r.run_id: run_cells(r) for r in step})
        self._schedule_fill()
        self._update_status()

    def _update_status(self) -> None:
        n, total = len(self.matched), max(self.data.total, len(self.data.rows))
        shown = self.table.row_count
        order = f" · sorted by {self.sort_column} {'↓' if self.sort_reverse else '↑'}"
        if not self.loaded:
            text = "loading runs…"
        elif not self.complete:  # only the newest runs read: what else matches is not known yet
            text = f"{shown} of {plural(total, 'run')} · loading…{order}"
        elif self.to_fill:
            text = f"{n} of {plural(total, 'run')} · {shown} shown · loading…{order}"
        else:
            more = f" · {shown} shown" if n > shown else ""
            text = f"{n} of {plural(total, 'run')}{more}{order}"
        self.query_one("#runs-status", Static).update(text)

    # ------------------------------------------------------------------ detail
    def _schedule_detail(self) -> None:
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY_S, self._show_detail)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self) -> None:
        self._schedule_detail()

    def _show_detail(self) -> None:
        self._detail_timer = None
        rid = self.table.current_id
        text = self.query_one("#runs-detail-text", Static)
        if rid is None:
            self._detail_id = None
            self.query_one(LossChart).set_points([])
            text.update("No runs yet: train or validate a model (r on the Stocks screen); every run it logs "
                        "shows here." if not self.data.rows else "No run matches the filter.")
            return
        if rid != self._detail_id:
            self._detail_id = rid
            self._load_detail(rid)

    @work(exclusive=True, group="runs-detail")
    async def _load_detail(self, run_id: str) -> None:
        try:
            d = await read_for(self, self.services.call(rb.load_detail, self.services.store, self.services.workspace,
                                                        run_id, self.data))
        except Exception as exc:  # noqa: BLE001
            self.notify_error(exc)
            return
        if d is None or run_id != self.table.current_id:
            return
        self.query_one("#runs-detail-text", Static).update(detail_text(d, self.by_id.get(run_id)))
        chart = self.query_one(LossChart)
        chart.empty_title = "loss — none: this run did not train" if d.run_dir is None else "loss — no points"
        chart.set_points(d.curve)

    # ------------------------------------------------------------------ actions
    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY_S, self._apply_filter)

    def _apply_filter(self) -> None:
        self._filter_timer = None
        if self.loaded:
            self._render_rows()

    def apply_filter_now(self) -> None:
        if self._filter_timer is not None:  # Enter applies what was typed at once
            self._filter_timer.stop()
            self._apply_filter()

    @on(Input.Submitted, "#runs-filter")
    def _filter_done(self) -> None:
        """Enter in the filter after it was clicked into (typing then went to the field itself)."""
        self.end_filter()

    def _sort(self, column: str, reverse: bool) -> None:
        self.sort_column, self.sort_reverse = column, reverse
        self._render_rows()
        if self.table.row_count:
            self.table.move_cursor(row=0)

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        col = str(event.column_key.value)
        self._sort(col, not self.sort_reverse if col == self.sort_column else False)

    def action_sort_next(self) -> None:
        i = SORTABLE.index(self.sort_column) if self.sort_column in SORTABLE else -1
        self._sort(SORTABLE[(i + 1) % len(SORTABLE)], False)

    def action_flip_order(self) -> None:
        self._sort(self.sort_column, not self.sort_reverse)

    def action_export(self, fmt: str) -> None:
        self._export(fmt)

    @work(group="runs-export")
    async def _export(self, fmt: str) -> None:
        if not self.matched:
            self.notify("no runs to export", severity="warning")
            return
        try:
            path = await self.services.call(rb.export_rows, list(self.matched), fmt,
                                            Workspace(self.services.workspace).reports_dir)
        except (OSError, ValueError) as exc:
            self.notify_error(exc)
            return
        self.notify(f"{plural(len(self.matched), 'run')} → {path}", title=f"exported {fmt}")

    def action_forecast(self) -> None:
        """The run's own job's forecasts (a validate run), else those of the decisions that use it."""
        r = self.by_id.get(self.table.current_id or "")
        if r is None:
            self.notify("no run selected", severity="warning")
            return
        jobs = [r.job_id, *(p.job_id for p in self.data.picks if p.source_run == r.run_id),
                *(c.job_id for c in self.data.comparisons if c.source_run == r.run_id)]
        self.post_message(ForecastRequested(r.symbol, r.model, r.horizon, r.preset, jobs))

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Forecast view of highlighted run", "Its decision's forecasts, window by window", self.action_forecast)
        yield ("Export runs table as CSV", "Write reports/runs-<time>.csv", lambda: self.action_export("csv"))
        yield ("Export runs table as markdown", "Write reports/runs-<time>.md (m)", lambda: self.action_export("md"))
        yield ("Sort runs by next column", "Cycle the sort column (s)", self.action_sort_next)
        yield ("Flip the runs sort order", "Ascending/descending (o)", self.action_flip_order)


def _read_runs(store: Any, newest: int | None = None) -> tuple[rb.RunsData, dict[str, str]]:
    """The runs (all, or the `newest` n) and each one's filter text, read together on the I/O thread."""
    data = rb.load_runs(store, newest)
    return data, {r.run_id: r.haystack() for r in data.rows}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def train_words(mets: dict[str, Any]) -> list[str]:
    """A train run's own metrics, with its epochs as Live and the log count them (from 1): the
    stored `best_epoch` is the 0-based index training keeps, `stopped_early` a 0/1 flag."""
    m = dict(mets)
    best, done, early = m.pop("best_epoch", None), m.pop("epochs_done", None), m.pop("stopped_early", None)
    words = []
    if isinstance(best, int | float) and best >= 0:
        words.append(f"best epoch {int(best) + 1}" + (f" of {int(done)}" if isinstance(done, int | float) else ""))
    elif isinstance(done, int | float):
        words.append(f"{int(done)} epochs")
    if isinstance(early, int | float):
        words.append("stopped early" if early else "no early stop")
    return words + [f"{k}={_fmt(v)}" for k, v in m.items()]


def detail_text(d: rb.RunDetail, row: rb.RunRow | None) -> Text:
    """Config, metrics (with their windows), where the run is used, and its artifacts."""
    r = d.run
    head = f"{r.run_id} · {r.model} · {r.symbol}"
    if row is not None:
        head += f" · h={row.horizon if row.horizon is not None else '?'} · {row.preset or '?'} · {row.kind} ({row.state})"
    cfg = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.hyperparams.items()) if not isinstance(v, dict | list))
    mets = r.metrics
    val = [f"{k.removeprefix('val_')}={_fmt(v)}" for k, v in mets.items() if k.startswith("val_")]
    test = [f"{k.removeprefix('test_')}={_fmt(v)}" for k, v in mets.items() if k.startswith("test_")]
    other = train_words({k: v for k, v in mets.items() if not k.startswith(("val_", "test_"))})
    lines = [head, f"config: {cfg or '—'}"]
    if val:
        lines.append(f"val ({row.val_windows if row else '?'}): " + ", ".join(val))
    if test:
        lines.append(f"test ({row.test_windows if row else '?'}): " + ", ".join(test))
    if other:
        lines.append("train: " + ", ".join(other))
    lines.append("used by: " + ("; ".join(d.used_by) if d.used_by else "nothing (no pick, comparison or promotion)"))
    if d.artifacts:
        files = ", ".join(f"{name} ({size / 1024:.0f} KiB)" for name, size in d.artifacts[:8])
        more = f" +{len(d.artifacts) - 8} more" if len(d.artifacts) > 8 else ""
        lines.append(f"artifacts in {d.run_dir}: {files}{more}")
    if d.checkpoint and not d.artifacts:
        lines.append(f"checkpoint: {d.checkpoint}{'' if d.checkpoint_exists else ' (gone: removed by gc?)'}")
    elif not d.checkpoint and not d.artifacts:
        lines.append("artifacts: none (base weights or naive)")
    if r.notes:
        lines.append(f"notes: {r.notes}")
    out = Text("\n".join(lines))  # plain text: ids and configs may hold "[" (no markup)
    out.stylize("bold", 0, len(head))
    return out
