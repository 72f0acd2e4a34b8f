"""Live view of one job: loss curves per symbol/run, where it is, log tail, and the GPU panel.

Why it follows the pump: loss points and log lines arrive through the app's batched update pump;
the chart redraws at most every 2 s, and the header and streamed log lines are written at most
once a second (STREAM_FLUSH_S), each the first change after a quiet interval at once (one
console.ratelimit.RateLimit each), so a fast job never floods the renderer: repainting them on
every batch was most of the screen's CPU with 24 jobs streaming (bench/bench_console.py).
Switching job (n/N) repaints the header at once; the new job's chart and log tail are drawn 0.1 s
later (a held n/N draws only the job it stops on). The header is two lines
that never wrap (a narrow terminal cuts them with an ellipsis): what the job is and where it is
(stage, symbol i/n, epoch i/n, ETA; a stopped job says where it stopped), then the kept (best)
validation loss of each run — what the adapter will be — not the last one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import ProgressBar, Static

from console.messages import ShowJob
from console.ratelimit import RateLimit
from console.screens.base import ModeScreen, read_for
from console.screens.queue import cancel_job, where_parts
from console.widgets.gpu_panel import GpuPanel
from console.widgets.log_tail import LogTail
from console.widgets.loss_chart import KEY_REDRAW_DELAY_S, LossChart
from engine.state import Status

LOG_LINES = 200
#: Streamed header figures and log lines reach the screen at most this often.
STREAM_FLUSH_S = 1.0


#: Job kinds whose tasks emit loss events (the others only report progress and logs).
LOSS_KINDS: frozenset[str] = frozenset({"train", "sweep", "pipeline"})


def repeated_lines(tail: list[str], streamed: list[str]) -> int:
    """How many of the first streamed lines repeat the end of the tail read when the job was shown.

    Why: the tail comes from the engine mirror, which holds every line it has received, while the
    update pump still has the newest of them queued; they arrive again as the job's first streamed
    lines (seen in the walk: a train job's first log line twice). Lines carry their second, so a new
    line equal to the tail's last one is a line logged twice within one second, and is dropped with it.
    """
    for k in range(min(len(tail), len(streamed)), 0, -1):
        if streamed[:k] == tail[-k:]:
            return k
    return 0


class LiveScreen(ModeScreen):
    MODE: ClassVar[str] = "live"
    #: Footer words kept short so that `q Quit` fits at 80 columns: `n/N Job` names both keys (N is
    #: left out of the footer), `o Earlier` overlays earlier runs; the keys panel (?) and the palette
    #: say it in full.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "cycle(1)", "Job", key_display="n/N", tooltip="next (N: previous)", id="live-next"),
        Binding("N", "cycle(-1)", "Prev job", id="live-prev", show=False),
        Binding("c", "cancel_job", "Cancel", id="live-cancel"),
        Binding("s", "toggle_chart('smooth')", "Smooth", id="live-smooth"),
        Binding("l", "toggle_chart('log_scale')", "Log y", id="live-log-scale"),
        Binding("o", "overlay", "Earlier", tooltip="runs of this model and symbol, overlaid", id="live-overlay"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.job_id: str | None = None
        self._header: tuple[str, str] = ("", "")
        #: The shown job's log lines still to be written after the next frame (show_job); None once written.
        self._log_pending: list[str] | None = None
        self._log_timer: Timer | None = None
        #: Streamed log lines not written yet; they and the header's news are flushed ≤ 1/STREAM_FLUSH_S.
        self._stream_logs: list[str] = []
        #: The log tail show_job read, until the first streamed lines of its job arrive (`repeated_lines`).
        self._tail_read: list[str] | None = None
        self._stream = RateLimit(STREAM_FLUSH_S, self._flush_stream, clock=lambda: self.fc_app.monotonic(),
                                 set_timer=self.set_timer)

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="live-body"):
            with Vertical(id="live-main"):
                yield Static("", id="live-title")
                yield Static("", id="live-best")
                yield ProgressBar(total=None, show_eta=False, id="live-progress")
                yield LossChart(id="live-chart", monotonic=self.app.monotonic)  # type: ignore[attr-defined]
                yield LogTail(LOG_LINES, id="live-log")
            yield GpuPanel(id="live-gpu")

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        """The job on view again; when there is none yet, the job the app opened Live on, else the newest."""
        self.show_job(self.job_id or self.fc_app.live_job_id or self._default_job())

    @on(ShowJob)
    def _show_job_asked(self, message: ShowJob) -> None:
        self.show_job(message.job_id)

    def _default_job(self) -> str | None:
        jobs = self.services.jobs()
        running = [j for j in jobs if j.state == Status.RUNNING]
        pool = running or jobs
        return max(pool, key=lambda j: (j.created_at or 0.0, j.id)).id if pool else None

    def show_job(self, job_id: str | None) -> None:
        """Switch the view to `job_id`, loading its whole curve and log tail once."""
        self.job_id = job_id
        chart = self.query_one(LossChart)
        log = self.query_one(LogTail)
        log.clear()
        self._log_pending = None  # a fill still due for the job shown before writes nothing
        self._stream_logs = []  # nor a flush of its streamed lines
        self._tail_read = None
        self._stream.cancel()
        # a new job starts from an empty bar: never the previous job's progress (a job that never ran shows none)
        self.query_one(ProgressBar).update(total=None, progress=0)
        self._header = ("", "")
        if job_id is None:
            self.query_one("#live-title", Static).update("No job to show. Start one with r on the Stocks screen.")
            self.query_one("#live-best", Static).update("")
            chart.set_points([])
            return
        js = self.services.job(job_id)
        kind = js.kind if js is not None else ""
        chart.empty_title = ("loss — no points yet" if kind in LOSS_KINDS else
                             f"loss — {kind or 'this'} jobs have no loss curve (train jobs do; n/N switch job)")
        chart.set_points(self.services.curve(job_id))  # drawn right after the header's frame
        self._update_header()
        pending = self._log_pending = list(self.services.log_tail(job_id, LOG_LINES))
        self._tail_read = list(pending)

        def fill_log() -> None:  # after the frame that shows the new job (a key's repaint waits for no log)
            if self._log_pending is pending:
                self._log_pending = None
                log.write_lines(pending)

        if self._log_timer is not None:
            self._log_timer.stop()
        self._log_timer = self.set_timer(KEY_REDRAW_DELAY_S, fill_log)  # with the chart's redraw

    def _update_header(self) -> None:
        js = self.services.job(self.job_id) if self.job_id else None
        title = self.query_one("#live-title", Static)
        bar = self.query_one(ProgressBar)
        if js is None:
            title.update(f"{self.job_id}: unknown job")
            return
        chart = self.query_one(LossChart)
        stopped = {k.rsplit(".", 1)[0] for k, v in js.metrics.items() if k.endswith(".stopped_early") and v}
        if stopped:
            chart.mark_stopped_early(stopped)
        parts = [f"[b]{js.kind}[/b] {', '.join(js.symbols)} {js.model or ''}".rstrip(), js.state, *where_parts(js)]
        if js.reason:
            parts.append(f"[red]{js.reason}[/red]")
        best = []
        for s in chart.series.values():
            b = s.best()
            if b is not None:
                ep = f" (epoch {b[2] + 1})" if b[2] is not None else ""
                best.append(f"{s.label + ' ' if s.label else ''}{b[1]:.4g}{ep}")
        line2 = ["best val " + ", ".join(best)] if best else []
        if js.last_train_loss is not None:
            line2.append(f"train {js.last_train_loss:.4g}")
        line2 += [f"device {js.device or '—'}", f"try {js.attempt}", f"[dim]{js.id}[/dim]"]
        header = (" · ".join(parts), " · ".join(line2))
        if header != self._header:
            # both lines are one row high (app.tcss): no re-layout of the screen for a new figure
            self._header = header
            title.update(header[0], layout=False)
            self.query_one("#live-best", Static).update(header[1], layout=False)
        if js.progress_total and (bar.total, bar.progress) != (js.progress_total, js.progress_done or 0):
            bar.update(total=float(js.progress_total), progress=float(js.progress_done or 0))

    def apply_job_updates(self, job_ids: set[str], losses: dict[str, list[dict[str, Any]]],
                          logs: dict[str, list[str]]) -> None:
        if not self.is_mounted:  # switched to but not composed yet: on_mount shows the job asked for
            return
        if self.job_id is None:
            if job_ids:
                self.show_job(self.fc_app.live_job_id or self._default_job())
            return
        if self.job_id not in job_ids:
            return
        if losses.get(self.job_id):
            self.query_one(LossChart).add_points(losses[self.job_id])
        lines = logs.get(self.job_id) or []
        if lines and self._tail_read is not None:
            lines = lines[repeated_lines(self._tail_read, lines):]
            self._tail_read = None
        if lines:
            if self._log_pending is not None:  # the tail is not written yet: these lines go after it
                self._log_pending.extend(lines)
            else:
                self._stream_logs.extend(lines)
        self._stream.request()

    def _flush_stream(self) -> None:
        """Write the streamed log lines and the header's figures gathered since the last flush."""
        if self._stream_logs:
            lines, self._stream_logs = self._stream_logs, []
            self.query_one(LogTail).write_lines(lines)
        self._update_header()

    def action_cycle(self, step: int) -> None:
        jobs = sorted(self.services.jobs(), key=lambda j: (j.created_at or 0.0, j.id))
        if not jobs:
            return
        ids = [j.id for j in jobs]
        i = ids.index(self.job_id) if self.job_id in ids else -1
        self.show_job(ids[(i + step) % len(ids)])

    def action_cancel_job(self) -> None:
        if self.job_id:
            cancel_job(self.app, self.job_id)  # asks first when the job is running

    def action_toggle_chart(self, option: str) -> None:
        on = self.query_one(LossChart).toggle(option)
        self.notify(f"{'smoothing' if option == 'smooth' else 'log scale'} {'on' if on else 'off'}", timeout=2)

    def action_overlay(self) -> None:
        """Overlay (or remove) the earlier runs of this job's model on its symbols, from their curve.jsonl."""
        chart = self.query_one(LossChart)
        if chart.earlier:
            chart.set_earlier({})
            return
        js = self.services.job(self.job_id) if self.job_id else None
        if js is None or not js.model:
            self.notify("no model to look up earlier runs of", severity="warning")
            return
        own = {k for k in chart.series}
        job_id = js.id

        async def load() -> None:
            runs = await read_for(self, self.services.call(self.services.earlier_curves_blocking, js.model,
                                                          list(js.symbols), own))
            if self.job_id != job_id:
                return
            if not runs:
                self.notify(f"no earlier {js.model} runs of {', '.join(js.symbols)} with a curve", timeout=4)
                return
            chart.set_earlier(runs)
            self.notify(f"{len(runs)} earlier run(s) overlaid (grey); o again removes them", timeout=4)

        self.run_worker(load(), exit_on_error=False, group="live-overlay", exclusive=True)

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Next job (live view)", "Show the next job's curves", lambda: self.action_cycle(1))
        yield ("Cancel watched job", "Stop the job shown in the live view", self.action_cancel_job)
        yield ("Smooth train loss", "Toggle an exponential moving average (s)", lambda: self.action_toggle_chart("smooth"))
        yield ("Log-scale loss axis", "Toggle a log y axis (l)", lambda: self.action_toggle_chart("log_scale"))
        yield ("Overlay earlier runs", "Earlier runs of this model and symbol, from curve.jsonl (o)", self.action_overlay)
