"""Queue screen: every job with state, kind, symbols, model, progress, ETA, device, attempt.

Order (`queue_order`): running, then queued, then ended jobs, newest first, so what runs never scrolls
off; a sweep's or pipeline's jobs sit under it. `c` cancels (a running job after a confirmation:
`cancel_job`, which Live uses too).

Why keyed updates: the app's pump hands over only the ids that changed; their rows are rewritten
cell by cell inside one batch, so 24 streaming jobs cost a handful of cell writes per frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from console.messages import OpenLiveRequested, StartRunRequested
from console.screens.base import ModeScreen
from console.screens.confirm import ConfirmScreen
from console.state_style import state_cell
from console.widgets.table import Cell, KeyedTable, clock_cell, num, txt
from console.words import clipped
from engine.names import short_job_id
from engine.state import JobState, Status, where_words

COLUMNS = (
    ("state", "State"), ("kind", "Kind"), ("symbols", "Symbol"), ("model", "Model"), ("progress", "Progress"),
    ("stage", "Stage"), ("eta", "ETA"), ("device", "Device"), ("attempt", "Try"), ("priority", "Pri"), ("id", "Job"),
)


#: Widest Stage cell (`training SPY 2/2 ep 3/15` fits; longer words end in `…`).
STAGE_MAX = 26


def where_parts(js: JobState) -> list[str]:
    """Where a job is (or where it stopped) and, while it runs, its ETA: the words Queue's detail line
    and Live's header both show."""
    parts = []
    where = where_words(js)
    if where and js.state != Status.SUCCEEDED:
        parts.append(where if js.active else f"stopped at {where}")
    if js.state == Status.RUNNING and js.eta_s is not None:
        parts.append(f"ETA {clock_cell(js.eta_s).text}")
    return parts


def progress_cell(done: float | None, total: float | None, width: int = 8) -> Cell:
    if not total:
        return Cell(None, "—", style="dim")
    frac = max(0.0, min(1.0, float(done or 0) / float(total)))
    n = round(frac * width)
    return Cell(frac, "█" * n + "░" * (width - n) + f" {frac * 100:3.0f}%")


#: Streaming figures (progress, ETA, stage) repaint the table at most this often (KeyedTable): every
#: write repaints all visible rows; at 2 s 24 streaming jobs cost the Queue ~8 % of a core (bench_console).
STREAM_INTERVAL_S = 2.0

#: Kinds whose jobs spawn others (trials, steps): those are listed right under them.
SPAWNING_KINDS: frozenset[str] = frozenset({"sweep", "pipeline"})


def _group(js: Any) -> int:
    """Running first, then queued, then everything that ended."""
    return {Status.RUNNING: 0, Status.QUEUED: 1}.get(js.state, 2)


def queue_order(jobs: Iterable[Any]) -> list[tuple[Any, int]]:
    """(job, depth) in the order the Queue lists them: running, then queued, then ended jobs, newest
    first within each, so what is running stays at the top; a sweep's or pipeline's jobs (spec
    `parent` naming it, another kind) follow it, oldest first (the order they ran), one level deeper.
    A retry also names its parent, but is the same kind: it stays a job of its own."""
    jobs = list(jobs)
    by_id = {j.id: j for j in jobs}
    children: dict[str, list[Any]] = {}
    tops = []
    for j in jobs:
        p = by_id.get(j.parent) if getattr(j, "parent", None) else None
        if p is not None and p.kind in SPAWNING_KINDS and j.kind != p.kind:
            children.setdefault(p.id, []).append(j)
        else:
            tops.append(j)
    out: list[tuple[Any, int]] = []

    def emit(j: Any, depth: int) -> None:
        out.append((j, depth))
        for c in sorted(children.get(j.id, []), key=lambda c: (c.created_at or 0.0, c.id)):
            emit(c, depth + 1)

    for j in sorted(tops, key=lambda j: (_group(j), -(j.created_at or 0.0), j.id)):
        emit(j, 0)
    return out


def job_cells(js: Any, rank: int = 0, depth: int = 0) -> dict[str, Cell]:
    """One Queue row; `rank` (the row's place in `queue_order`) is the Job column's sort value."""
    syms = list(getattr(js, "symbols", []) or [])
    sym_text = syms[0] + (f" +{len(syms) - 1}" if len(syms) > 1 else "") if syms else "—"
    return {
        "state": state_cell(js.state),
        "kind": txt(("  " * (depth - 1) + "└ " if depth else "") + js.kind),
        "symbols": Cell(sym_text, sym_text),
        "model": txt(js.model or "—"),
        "progress": progress_cell(js.progress_done, js.progress_total),
        # where it is; a job that ended early keeps where it stopped (a succeeded one needs none).
        # Clipped: the column only grows, and a long stage once would push the Job column off an
        # 120-column screen for good; the detail line below the table has the whole words.
        "stage": txt(clipped(where_words(js, short=True), STAGE_MAX) if js.state != Status.SUCCEEDED else "",
                     style="" if js.state == Status.RUNNING else "dim"),
        "eta": clock_cell(js.eta_s if js.state == Status.RUNNING else None),
        "device": txt(js.device or "—"),
        "attempt": num(js.attempt, "{:d}"),
        "priority": num(js.priority, "{:d}"),
        "id": Cell(rank, short_job_id(js.id), style="dim"),
    }


def cancel_job(app: Any, job_id: str) -> None:
    """`c` on Queue and Live: a queued job is cancelled at once; a running one (what it has not saved
    is lost) only after the user confirms."""
    js = app.services.job(job_id)
    if js is None or js.state != Status.RUNNING:
        _cancel(app, job_id)
        return
    what = " ".join(x for x in (js.kind, ", ".join(js.symbols), js.model or "") if x)
    where = where_words(js)
    body = f"{job_id}\n{what} is running{f' ({where})' if where else ''}.\nStop it? What it has not saved is lost."

    def answered(yes: bool | None) -> None:
        if yes:
            _cancel(app, job_id)

    app.push_screen(ConfirmScreen("Stop a running job?", body, "Stop job"), answered)


def _cancel(app: Any, job_id: str) -> None:
    try:
        app.services.cancel(job_id)
        app.notify(f"cancelling {job_id}")
    except (RuntimeError, ValueError, KeyError) as exc:
        app.notify(str(exc), title=type(exc).__name__, severity="error", timeout=6)


class QueueScreen(ModeScreen):
    MODE: ClassVar[str] = "queue"
    RELOAD_ON_QUEUED: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_job", "Cancel", id="queue-cancel"),
        Binding("t", "retry_job", "Retry", id="queue-retry"),
        Binding("plus,equals_sign", "bump(1)", "Pri+", key_display="+", id="queue-pri-up"),
        Binding("minus", "bump(-1)", "Pri-", key_display="-", id="queue-pri-down"),
        # priority: the focused DataTable's own (hidden) `enter` → select_cursor would otherwise
        # shadow this binding, so the footer never showed how to open the Live view.
        Binding("enter", "open_live", "Live", id="queue-live", show=True, priority=True),
        Binding("r", "start_run", "Run…", id="queue-run"),
    ]

    _detail_text: str = ""

    def __init__(self) -> None:
        super().__init__()
        #: job id -> (rank, depth, group) as last listed: an update that changes a job's group re-lists.
        self._placed: dict[str, tuple[int, int, int]] = {}

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="queue-table", stream_interval_s=STREAM_INTERVAL_S)
        yield Static("", id="queue-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.reload()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#queue-table", KeyedTable)

    def reload(self) -> None:
        order = queue_order(self.services.jobs())
        self._placed = {j.id: (i, d, _group(j)) for i, (j, d) in enumerate(order)}
        if self.table.sort_column is None:
            self.table.sort_by("id")  # the rank: queue_order's order (a header click sorts otherwise)
        self.table.sync({j.id: job_cells(j, i, d) for i, (j, d) in enumerate(order)})
        self._show_detail()

    def apply_job_updates(self, job_ids: set[str], losses: dict[str, list[dict[str, Any]]],
                          logs: dict[str, list[str]]) -> None:
        rows = {}
        for jid in job_ids:
            js = self.services.job(jid)
            placed = self._placed.get(jid)
            if js is None or placed is None or placed[2] != _group(js):
                self.reload()  # a job came, went (gc) or started/ended: its place in the list changes
                return
            rows[jid] = job_cells(js, placed[0], placed[1])
        if rows:
            self.table.update_rows(rows)
            self._show_detail()

    def _show_detail(self) -> None:
        """Show the highlighted job's line; skip the repaint (and the screen re-layout) if unchanged."""
        jid = self.table.current_id
        js = self.services.job(jid) if jid else None
        if js is None:
            self._set_detail("No jobs yet. Press r to start runs (or pick symbols on the Stocks screen first)."
                             if not self.table.row_count else "")
            return
        syms = ", ".join(js.symbols)
        text = f"{js.id} · {js.kind} {syms} {js.model or ''} · {js.state}"
        text += "".join(f" · {part}" for part in where_parts(js))
        if js.reason:
            text += f"\nreason: {js.reason}"
        elif js.state == Status.RUNNING and js.last_train_loss is not None:
            text += f" · train loss {js.last_train_loss:.4g}"
            if js.last_val_loss is not None:
                text += f" · val {js.last_val_loss:.4g}"
        self._set_detail(text)

    def _set_detail(self, text: str) -> None:
        """Update the detail line; re-layout only when its height changes.

        Why: `Static.update` re-lays out the whole screen by default, and the detail changes with
        every loss tick of a running job; its height (rows after wrapping) rarely does.
        """
        if text == self._detail_text:
            return
        detail = self.query_one("#queue-detail", Static)
        width = max(1, detail.content_size.width)

        def rows(t: str) -> int:  # wrapped as the Static wraps it
            return len(Text(t).wrap(self.app.console, width))

        same_height = self._detail_text != "" and rows(self._detail_text) == rows(text)
        self._detail_text = text
        detail.update(text, layout=not same_height)

    @on(DataTable.RowHighlighted, "#queue-table")
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected, "#queue-table")
    def _selected(self) -> None:
        """A click on the highlighted row (the keyboard's `enter` goes through the binding)."""
        self.action_open_live()

    def _current(self) -> str | None:
        jid = self.table.current_id
        if jid is None:
            self.notify("no job selected", severity="warning")
        return jid

    def action_cancel_job(self) -> None:
        jid = self._current()
        if jid:
            cancel_job(self.app, jid)

    def action_retry_job(self) -> None:
        jid = self._current()
        if jid:
            try:
                new = self.services.retry(jid)
                self.notify(f"retry queued as {new.id}")
                self.reload()
            except (RuntimeError, ValueError, KeyError) as exc:
                self.notify_error(exc)

    def action_bump(self, delta: int) -> None:
        jid = self._current()
        if not jid:
            return
        js = self.services.job(jid)
        try:
            self.services.set_priority(jid, int(js.priority) + delta if js else delta)
        except (RuntimeError, ValueError, KeyError) as exc:
            self.notify_error(exc)
            return
        js = self.services.job(jid)
        if js is not None:
            self.table.update_rows({jid: job_cells(js)})

    def action_open_live(self) -> None:
        jid = self.table.current_id
        if jid:
            self.post_message(OpenLiveRequested(jid))

    def action_start_run(self) -> None:
        self.post_message(StartRunRequested())

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Cancel selected job", "Stop the highlighted job", self.action_cancel_job)
        yield ("Retry selected job", "Queue a new attempt of the highlighted job", self.action_retry_job)
        yield ("Raise priority of selected job", "Priority +1", lambda: self.action_bump(1))
        yield ("Lower priority of selected job", "Priority -1", lambda: self.action_bump(-1))
        yield ("Watch selected job live", "Loss curves, progress and log tail", self.action_open_live)
