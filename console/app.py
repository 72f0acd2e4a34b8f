"""The Textual operator console: one mode per screen, an update pump, one telemetry poller.

Why this shape: the engine runs inside this app's asyncio loop (it tails event files
asynchronously), so the app drains its update queue in batches and hands each batch to the
visible screen; GPU telemetry is sampled on a thread by one self-rescheduling poller; store reads
go through ConsoleServices on a background thread. Nothing here imports torch.

Startup order (the first frame is the budget, issue 16: ≤ 1 s from launch): the Stocks screen is
composed and painted first; then the engine service and the store are opened (`_startup`); then
what is alive is frozen out of the garbage collector's full scans (`freeze_heap`, the one place that
does it). Every other screen is imported and built when its mode is first shown (a screen is built
by Textual's public mode switch only: the Runs screen shows its newest rows first and fills the rest
in steps, so it needs no building ahead).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, ClassVar

from textual import events, on
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from console import messages
from console.key_handover import KeyHandover
from console.palette import ConsoleCommands
from console.prefs import load_prefs, save_prefs
from console.screens.base import ModeScreen
from console.services import ConsoleServices
from console.telemetry_poller import TelemetryPoller
from console.update_pump import group_updates, pump
from console.widgets.nav import NAV_ITEMS
from engine.state import FINAL_STATES


class ForecastConsoleApp(App[int]):
    """forecast-console's UI. Construct with a ConsoleServices (tests pass fakes for the GPU/clock)."""

    CSS_PATH = "app.tcss"
    TITLE = "forecast-console"
    #: Each mode's screen class ("module.Class"), imported when the mode is first shown: the first
    #: frame needs only Stocks, and each other screen's imports (plotext, the store's records…) are
    #: paid when it is opened.
    MODE_SCREENS: ClassVar[dict[str, str]] = {
        "stocks": "console.screens.stocks.StocksScreen", "queue": "console.screens.queue.QueueScreen",
        "live": "console.screens.live.LiveScreen", "compare": "console.screens.compare.CompareScreen",
        "regressions": "console.screens.regressions.RegressionsScreen",
        "configs": "console.screens.configs.ConfigsScreen", "gpu": "console.screens.gpu.GpuScreen",
        "runs": "console.screens.runs.RunsScreen",
    }
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    #: Below 100 columns the Live screen stacks the GPU panel under the chart (see app.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, f"switch_mode('{mode}')", label, show=False, id=f"nav-{mode}")
          for mode, key, label in NAV_ITEMS),
        Binding("g", "switch_mode('gpu')", "GPU", show=False, id="nav-gpu-g"),
        Binding("r", "start_run", "Run…", id="run"),
        Binding("ctrl+t", "toggle_theme", "Theme", id="theme"),
        Binding("question_mark", "toggle_keys", "Keys", key_display="?", show=False, id="keys"),
        Binding("escape", "hide_keys", "Close keys", show=False, id="keys-close"),
        Binding("q", "request_quit", "Quit", id="quit"),
        Binding("ctrl+q", "request_quit", "Quit", show=False, id="quit-ctrl", priority=True),
    ]

    def __init__(
        self,
        services: ConsoleServices | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        telemetry_interval: float | None = 1.0,
        start_engine: bool = True,
        workspace_label: str | None = None,
    ) -> None:
        super().__init__()
        #: The screen of each mode once created: the modes' factories record what they build, so
        #: the app finds a mode's screen without reading Textual's private screen stacks.
        self._mode_screens: dict[str, Screen] = {}
        for mode, where in self.MODE_SCREENS.items():
            self.add_mode(mode, partial(self._new_mode_screen, mode, where))
        self.services = services or ConsoleServices(clock=clock)
        self.clock = clock
        self.monotonic = monotonic
        self.telemetry_interval = telemetry_interval
        self.start_engine = start_engine
        #: What the header shows for the workspace (tests pin it; tmp paths differ per run).
        self.workspace_label = workspace_label or str(self.services.workspace)
        self.telemetry: Any | None = None
        self.live_job_id: str | None = None
        self.selected_symbols: list[str] = []  # as the Stocks screen last said (SelectionChanged)
        self.ready = asyncio.Event()
        self.update_batches = 0
        self._services_closed = False  # not `_closed`: Textual's message pump owns that name
        self._finished_seen: set[str] = set()
        self._shutdown_task: asyncio.Task[None] | None = None
        self._heap_frozen = False  # freeze_heap done (undone on unmount)
        self._telemetry = TelemetryPoller(self, lambda: self.services.gpu_snapshot(), self._apply_telemetry,
                                          telemetry_interval)
        self._key_handover = KeyHandover(self, super().on_event)

    async def on_event(self, event: events.Event) -> None:
        """Terminal keys go through KeyHandover: each one after the last has changed the screen."""
        if not await self._key_handover.take(event):
            await super().on_event(event)

    # ------------------------------------------------------------------ startup
    def on_mount(self) -> None:
        self.sub_title = self.workspace_label
        kept = load_prefs().theme
        if kept in self.available_themes:
            self.theme = kept
        self.theme_changed_signal.subscribe(self, lambda theme: save_prefs(theme=theme.name))
        self.switch_mode("stocks")
        # After the Stocks screen's first paint: opening the engine and the store imports the job
        # client, the spec's validation and the store's records (~0.3 s) in this loop, which would
        # otherwise come before the first frame.
        self.call_after_refresh(self.run_worker, self._startup(), name="startup", exit_on_error=False)

    async def _startup(self) -> None:
        """Open the store and engine after the first frame, then start the pump and the poller."""
        if not self.start_engine:
            self.services.use_engine = False
        loop = asyncio.get_running_loop()

        def starting(note: str) -> None:  # on the thread that waits for the service
            loop.call_soon_threadsafe(self._show_service_starting, note)

        try:
            await self.services.open(on_starting=starting)
        except Exception as exc:  # noqa: BLE001 - the console stays up and says why
            self.notify(f"could not open the workspace: {exc}", severity="error", timeout=10)
        finally:
            self.sub_title = self.workspace_label
        if self.services.readonly_reason:
            self.sub_title = f"{self.workspace_label} · READ-ONLY (no engine service)"
        for msg in self.services.notices:
            self.notify(msg, severity="warning", timeout=8)
        self.post_to_screen(messages.WorkspaceOpened())
        if self.services.engine is not None:
            self.run_worker(self._pump_updates(), name="update-pump", exit_on_error=False)
        self._telemetry.poll()
        self.ready.set()
        self.freeze_heap()

    def freeze_heap(self) -> None:
        """Move every object alive now out of the garbage collector's full collections (gc.freeze):
        a full one scans every tracked object (~80k after startup, ~120k with the Runs table filled),
        held the loop 100-250 ms on the 2-core box, and a key pressed then waited for it (Live and
        Runs keys of ~0.2 s in bench_console). What is alive after startup and once the Runs table
        first filled lives as long as the console. Called then (here and by the Runs screen); undone
        when the app ends (a test process runs many apps)."""
        gc.freeze()
        self._heap_frozen = True

    def _show_service_starting(self, note: str) -> None:
        """While the engine service starts, what it says it is doing (a one-off upgrade of a big ledger:
        "upgrading the run ledger to version 2: 40,000 / 100,000 runs") in the header's subtitle, in
        place of the workspace (so it fits 80 columns). The one reader of the service's note is the
        client that waits for it (engine.client.JobClient.start: each new note, then this), so under
        the console nothing is printed to stderr; the workspace comes back once the service answers
        (`_startup`; the client's last note is queued on this loop before its start returns)."""
        self.sub_title = note

    def mode_screen(self) -> ModeScreen | None:
        """The topmost mode screen (under any dialog), or None before the first is shown."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ModeScreen):
                return screen
        return None

    def post_to_screen(self, message: Message) -> None:
        """Hand a notice (console.messages) to the mode screen on view, under any dialog."""
        scr = self.mode_screen()
        if scr is not None:
            scr.post_message(message)

    # ------------------------------------------------------------------ engine updates
    async def _pump_updates(self) -> None:
        queue = self.services.subscribe()
        if queue is not None:
            await pump(queue, lambda batch: self.dispatch_updates(batch))

    def dispatch_updates(self, batch: Iterable[Any]) -> None:
        """Group a batch of JobUpdates by job and post it to the visible screen (JobsUpdated)."""
        ids, losses, logs = group_updates(batch)
        self.update_batches += 1
        finished = {jid for jid in ids if self._just_finished(jid)}
        self.post_to_screen(messages.JobsUpdated(ids, losses, logs, finished))
        self._update_running_title()

    def _just_finished(self, job_id: str) -> bool:
        """True the first time a job is seen in a final state (results may have reached the store)."""
        js = self.services.job(job_id)
        if js is None or js.state not in FINAL_STATES or job_id in self._finished_seen:
            return False
        self._finished_seen.add(job_id)
        return True

    def _update_running_title(self) -> None:
        n = self.services.running_count()
        base = "forecast-console"
        self.title = f"{base} · {n} running" if n else base

    # ------------------------------------------------------------------ telemetry
    def _apply_telemetry(self, tel: Any) -> None:
        self.telemetry = tel
        self.post_to_screen(messages.TelemetrySampled(tel, self.job_pids(tel)))

    def job_pids(self, tel: Any | None = None) -> dict[int, str]:
        """pid -> our job id, for the processes the telemetry shows on each GPU (the last sample by default)."""
        return self.services.job_pids(tel if tel is not None else self.telemetry)

    # ------------------------------------------------------------------ actions shared by screens
    @on(messages.SelectionChanged)
    def _selection_changed(self, message: messages.SelectionChanged) -> None:
        self.selected_symbols = message.symbols

    def _new_mode_screen(self, mode: str, where: str) -> Screen:
        screen = self._mode_screens[mode] = mode_screen_class(where)()
        return screen

    def get_screen_for_mode(self, mode: str) -> Screen | None:
        """The mode's screen, or None before the mode was first shown."""
        return self._mode_screens.get(mode)

    @on(messages.StartRunRequested)
    def _start_run_requested(self, message: messages.StartRunRequested) -> None:
        self.action_start_run(message.kind)

    def action_start_run(self, kind: str | None = None) -> None:
        symbols = self.selected_symbols
        if not symbols:
            self.notify("select symbols on the Stocks screen first (space, or p/a presets)", severity="warning")
            return

        from console.screens.start_run import StartRunScreen

        form = StartRunScreen(symbols, kind or load_prefs().run_kind)

        def done(spec: Any) -> None:
            save_prefs(run_kind=form.chosen_kind)  # the next form opens on the kind last chosen
            if spec is not None:
                self.submit_spec(spec)

        self.push_screen(form, done)

    def submit_spec(self, spec: Any, quiet: bool = False) -> bool:
        try:
            self.services.submit(spec)
        except (RuntimeError, ValueError) as exc:
            self.notify(str(exc), title="not queued", severity="error", timeout=8)
            return False
        if not quiet:
            self.notify(f"queued {spec.kind} for {', '.join(spec.symbols)}", title=spec.id)
        self.post_to_screen(messages.JobQueued(spec.id))
        return True

    @on(messages.QueueJobRequested)
    def _queue_job_requested(self, message: messages.QueueJobRequested) -> None:
        self.queue_jobs(message.kind, message.symbols, message.model, message.params, message.priority,
                        quiet=message.quiet)

    def queue_jobs(self, kind: str, symbols: list[str], model: str | None, params: dict[str, Any],
                   priority: int = 0, quiet: bool = False) -> bool:
        """Validate and submit one job over `symbols`; errors are notified, nothing queued."""
        if not symbols:
            self.notify("select symbols on the Stocks screen first", severity="warning")
            return False
        try:
            spec = self.services.make_spec(kind, symbols, model, params, priority)
        except ValueError as exc:
            self.notify(str(exc), title="not queued", severity="error", timeout=8)
            return False
        return self.submit_spec(spec, quiet=quiet)

    def open_live(self, job_id: str) -> None:
        """Switch to Live on `job_id`. `live_job_id` is the job a Live screen composed later opens on;
        one already there is told by ShowJob, posted before the switch so that its resume re-reads it."""
        self.live_job_id = job_id
        live = self.get_screen_for_mode("live")
        if live is not None:
            live.post_message(messages.ShowJob(job_id))
        self.switch_mode("live")

    @on(messages.OpenLiveRequested)
    def _open_live_requested(self, message: messages.OpenLiveRequested) -> None:
        self.open_live(message.job_id)

    @on(messages.ForecastRequested)
    def _forecast_requested(self, message: messages.ForecastRequested) -> None:
        """Compare, Configs and Runs ask for the Forecast view of a decision or run."""
        from console.screens.forecast_view import ForecastScreen

        self.push_screen(ForecastScreen(message))

    @on(messages.PromoteRequested)
    def _promote_requested(self, message: messages.PromoteRequested) -> None:
        from console import decision_flows

        self.run_worker(self._changing_decisions(decision_flows.confirm_promote(
            self, message.model, message.symbol, message.source, message.horizon, message.preset)),
            exit_on_error=False)

    @on(messages.RollbackRequested)
    def _rollback_requested(self, message: messages.RollbackRequested) -> None:
        from console import decision_flows

        self.run_worker(self._changing_decisions(decision_flows.confirm_rollback(self, message.model, message.symbol)),
                        exit_on_error=False)

    async def _changing_decisions(self, flow: Awaitable[bool]) -> None:
        """Run a confirm-then-write flow; when it changed `hyperparams/`, the screen on view re-reads."""
        if await flow:
            self.post_to_screen(messages.DecisionsChanged())

    def action_toggle_theme(self) -> None:
        """Dark/light; any theme change (this key or the palette's) is kept for the next run (console.prefs)."""
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def _keys_shown(self) -> bool:
        return bool(self.screen.query("HelpPanel"))

    def action_toggle_keys(self) -> None:
        """`?` opens the keys panel and closes it again (so does Esc)."""
        if self._keys_shown():
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_hide_keys(self) -> None:
        self.action_hide_help_panel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "hide_keys":
            return self._keys_shown()  # Esc is the panel's only while it is open
        return True

    async def action_quit(self) -> None:
        await self.action_request_quit()

    async def action_request_quit(self) -> None:
        running = self.services.running_count()
        if not running:
            await self.shutdown(cancel_running=False)
            return

        def chosen(choice: str | None) -> None:
            if choice is not None:
                # A plain task, not run_worker: started from the dialog's dismiss callback, a Textual
                # worker intermittently never resumed after its first await on a thread (store close),
                # so the console hung on quit (about 1 run in 3 in tests/test_console_regressions_quit.py).
                self._shutdown_task = asyncio.create_task(self.shutdown(cancel_running=choice == "cancel"))

        from console.screens.quit import QuitScreen

        self.push_screen(QuitScreen(running), chosen)

    async def shutdown(self, cancel_running: bool = False) -> None:
        if not self._services_closed:
            self._services_closed = True
            try:
                await self.services.close(cancel_running=cancel_running)
            except Exception as exc:  # noqa: BLE001
                self.log.error(f"closing services failed: {exc}")
        self.exit(0)

    async def on_unmount(self) -> None:
        if self._heap_frozen:
            gc.unfreeze()
        if not self._services_closed:
            self._services_closed = True
            await self.services.close(cancel_running=False)


def mode_screen_class(where: str) -> type[Screen]:
    """The screen class named "module.Class" in `ForecastConsoleApp.MODE_SCREENS`, imported now."""
    module, _, name = where.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Screen)):
        raise TypeError(f"{where} is not a Screen class")
    return cls
