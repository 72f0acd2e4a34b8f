"""Shared behaviour of the console's top-level screens (not a screen on its own).

Why: every mode screen shows the same header, nav strip and footer, reloads its data when shown
(reads run off the loop through ConsoleServices), and receives job updates and telemetry from the
app's single pump and poller instead of polling itself. The app posts those as messages
(console.messages); the handlers here turn each into the hook a screen overrides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Header

from console.messages import DecisionsChanged, JobQueued, JobsUpdated, TelemetrySampled, WorkspaceOpened
from console.widgets.gpu_panel import GpuPanel
from console.widgets.nav import NavBar

if TYPE_CHECKING:
    from console.app import ForecastConsoleApp
    from console.services import ConsoleServices

T = TypeVar("T")


async def read_for(screen: Screen[Any], read: Awaitable[T]) -> T:
    """Await one of `screen`'s reads; if the screen stopped running meanwhile, end the worker as cancelled.

    Why: a screen reads in a worker and then fills its widgets. When a screen is removed (the
    console quits, a view is closed) Textual first stops its message loop, then removes its widgets,
    and only at its unmount cancels its workers; a read that finished in between filled widgets that
    were gone (NoMatches, and the app exited with that error). A screen is not running from the
    first of those steps on, so every await in a worker that then fills widgets goes through here.
    """
    result = await read
    if not screen.is_running:
        raise asyncio.CancelledError(f"{type(screen).__name__} closed while reading")
    return result


class ModeScreen(Screen):
    """Base for mode screens: header + nav + body (compose_body) + footer."""

    MODE: ClassVar[str] = ""
    #: Data screens (stocks, compare, ...) re-read the store when a job finishes.
    RELOAD_ON_FINISH: ClassVar[bool] = False
    #: Screens that list jobs re-read when this console queues one (before its first event arrives).
    RELOAD_ON_QUEUED: ClassVar[bool] = False

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≈")
        yield NavBar(self.MODE)
        yield from self.compose_body()
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def fc_app(self) -> ForecastConsoleApp:
        return self.app  # type: ignore[return-value]

    @property
    def services(self) -> ConsoleServices:
        return self.fc_app.services

    def on_screen_resume(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Re-read this screen's data (override; must not block)."""

    @on(WorkspaceOpened)
    @on(DecisionsChanged)
    def _reread(self) -> None:
        self.reload()

    @on(JobQueued)
    def _job_queued(self) -> None:
        if self.RELOAD_ON_QUEUED:
            self.reload()

    @on(JobsUpdated)
    def _jobs_updated(self, message: JobsUpdated) -> None:
        with self.app.batch_update():  # one repaint for the whole batch
            self.apply_job_updates(message.job_ids, message.losses, message.logs)
            if message.finished:
                self.on_jobs_finished(message.finished)

    @on(TelemetrySampled)
    def _telemetry_sampled(self, message: TelemetrySampled) -> None:
        self.apply_telemetry(message.telemetry, message.job_pids)

    def apply_job_updates(self, job_ids: set[str], losses: dict[str, list[dict[str, Any]]],
                          logs: dict[str, list[str]]) -> None:
        """One batch of the app's update pump (JobsUpdated): the jobs that changed since the last."""

    def on_jobs_finished(self, job_ids: set[str]) -> None:
        """Jobs just finished: their results are (about to be) in the store; data screens re-read.

        The engine writes results off the loop a moment after the state flips, so re-read twice.
        """
        if self.RELOAD_ON_FINISH:
            self.reload()
            self.set_timer(1.0, self.reload)

    def apply_telemetry(self, tel: Any, job_pids: dict[int, str]) -> None:
        for panel in self.query(GpuPanel):
            panel.update_telemetry(tel, job_pids)

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        """(title, help, callback) entries this screen adds to the command palette."""
        return ()

    def notify_error(self, exc: BaseException) -> None:
        self.notify(str(exc), title=type(exc).__name__, severity="error", timeout=6)
