"""The Textual operator console: one mode per screen, an update pump, one telemetry poller.

Why this shape: the engine runs inside this app's asyncio loop (it tails event files
asynchronously), so the app drains its update queue in batches and hands each batch to the
visible screen; GPU telemetry is sampled on a thread by one self-rescheduling poller; store reads
go through ConsoleServices on a background thread. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from console import decision_flows
from console.palette import ConsoleCommands
from console.prefs import load_prefs, save_prefs
from console.screens.base import ModeScreen
from console.screens.compare import CompareScreen
from console.screens.configs import ConfigsScreen
from console.screens.forecast_view import ForecastRequested, ForecastScreen
from console.screens.gpu import GpuScreen
from console.screens.live import LiveScreen
from console.screens.queue import QueueScreen
from console.screens.quit import QuitScreen
from console.screens.regressions import RegressionsScreen
from console.screens.runs import RunsScreen
from console.screens.start_run import StartRunScreen
from console.screens.stocks import StocksScreen
from console.services import ConsoleServices
from console.update_pump import group_updates, pump
from console.widgets.nav import NAV_ITEMS
from engine.state import FINAL_STATES


class ForecastConsoleApp(App[int]):
    """forecast-console's UI. Construct with a ConsoleServices (tests pass fakes for the GPU/clock)."""

    CSS_PATH = "app.tcss"
    TITLE = "forecast-console"
    MODES: ClassVar[dict[str, Any]] = {
        "stocks": StocksScreen, "queue": QueueScreen, "live": LiveScreen, "compare": CompareScreen,
        "regressions": RegressionsScreen, "configs": ConfigsScreen, "gpu": GpuScreen,
        "runs": RunsScreen,
    }
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    #: Below 100 columns the Live screen stacks the GPU panel under the chart (see app.tcss).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
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
        #: The screen of each mode once created: MODES are factories that record what they build, so
        #: the app finds a mode's screen without reading Textual's private screen stacks.
        self._mode_screens: dict[str, Screen] = {}
        self.MODES = {mode: partial(self._new_mode_screen, mode, factory)
                      for mode, factory in type(self).MODES.items()}
        super().__init__()
        self.services = services or ConsoleServices(clock=clock)
        self.clock = clock
        self.monotonic = monotonic
        self.telemetry_interval = telemetry_interval
        self.start_engine = start_engine
        #: What the header shows for the workspace (tests pin it; tmp paths differ per run).
        self.workspace_label = workspace_label or str(self.services.workspace)
        self.telemetry: Any | None = None
        self.live_job_id: str | None = None
        self.ready = asyncio.Event()
        self.update_batches = 0
        self._closed = False
        self._finished_seen: set[str] = set()
        self._shutdown_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ startup
    def on_mount(self) -> None:
        self.sub_title = self.workspace_label
        kept = load_prefs().theme
        if kept in self.available_themes:
            self.theme = kept
        self.theme_changed_signal.subscribe(self, lambda theme: save_prefs(theme=theme.name))
        self.switch_mode("stocks")
        self.run_worker(self._startup(), name="startup", exit_on_error=False)

    async def _startup(self) -> None:
        """Open the store and engine after the first frame, then start the pump and the poller."""
        try:
            if self.start_engine:
                await self.services.open()
            else:
                self.services.use_engine = False
                await self.services.open()
        except Exception as exc:  # noqa: BLE001 - the console stays up and says why
            self.notify(f"could not open the workspace: {exc}", severity="error", timeout=10)
        if self.services.readonly_reason:
            self.sub_title = f"{self.workspace_label} · READ-ONLY (no engine service)"
        for msg in self.services.notices:
            self.notify(msg, severity="warning", timeout=8)
        self._reload_visible()
        if self.services.engine is not None:
            self.run_worker(self._pump_updates(), name="update-pump", exit_on_error=False)
        self._poll_telemetry()
        self.ready.set()

    def mode_screen(self) -> ModeScreen | None:
        """The topmost mode screen (under any dialog), or None before the first is shown."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, ModeScreen):
                return screen
        return None

    def _reload_visible(self) -> None:
        scr = self.mode_screen()
        if scr is not None:
            scr.reload()

    # ------------------------------------------------------------------ engine updates
    async def _pump_updates(self) -> None:
        queue = self.services.subscribe()
        if queue is not None:
            await pump(queue, lambda batch: self.dispatch_updates(batch))

    def dispatch_updates(self, batch: Iterable[Any]) -> None:
        """Group a batch of JobUpdates by job and hand it to the visible screen."""
        ids, losses, logs = group_updates(batch)
        self.update_batches += 1
        finished = {jid for jid in ids if self._just_finished(jid)}
        scr = self.mode_screen()
        if scr is not None:
            with self.batch_update():
                scr.apply_job_updates(ids, losses, logs)
                if finished:
                    scr.on_jobs_finished(finished)
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
    def _poll_telemetry(self) -> None:
        """One self-rescheduling poller: sample on a thread, apply, schedule the next sample."""
        self.run_worker(self._sample_telemetry, thread=True, group="telemetry", exclusive=True,
                        exit_on_error=False, name="telemetry")

    def _sample_telemetry(self) -> None:
        try:
            tel = self.services.gpu_snapshot()
        except Exception as exc:  # noqa: BLE001 - telemetry must never take the console down
            tel = None
            self.call_from_thread(self.notify, f"telemetry failed: {exc}", severity="warning")
        self.call_from_thread(self._apply_telemetry, tel)

    def _apply_telemetry(self, tel: Any) -> None:
        if tel is not None:
            self.telemetry = tel
            scr = self.mode_screen()
            if scr is not None:
                scr.apply_telemetry(tel, self.job_pids(tel))
        if self.telemetry_interval:
            self.set_timer(self.telemetry_interval, self._poll_telemetry)

    def job_pids(self, tel: Any | None = None) -> dict[int, str]:
        """pid -> our job id, for the processes the telemetry shows on each GPU."""
        tel = tel if tel is not None else self.telemetry
        out: dict[int, str] = {}
        for g in getattr(tel, "gpus", None) or []:
            for pid, _mem in getattr(g, "processes", None) or []:
                if pid is not None:
                    jid = self.services.job_for_pid(int(pid))
                    if jid:
                        out[int(pid)] = jid
        return out

    # ------------------------------------------------------------------ actions shared by screens
    @property
    def selected_symbols(self) -> list[str]:
        stocks = self.get_screen_for_mode("stocks")
        return sorted(stocks.selected) if isinstance(stocks, StocksScreen) else []

    def _new_mode_screen(self, mode: str, factory: Callable[[], Screen]) -> Screen:
        screen = self._mode_screens[mode] = factory()
        return screen

    def get_screen_for_mode(self, mode: str) -> Screen | None:
        """The mode's screen, or None before the mode was first shown."""
        return self._mode_screens.get(mode)

    def action_start_run(self, kind: str | None = None) -> None:
        symbols = self.selected_symbols
        if not symbols:
            self.notify("select symbols on the Stocks screen first (space, or p/a presets)", severity="warning")
            return

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
        scr = self.mode_screen()
        if isinstance(scr, QueueScreen):
            scr.reload()
        return True

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
        self.live_job_id = job_id
        self.switch_mode("live")
        live = self.get_screen_for_mode("live")
        if isinstance(live, LiveScreen) and live.is_mounted:
            live.show_job(job_id)

    def on_forecast_requested(self, message: ForecastRequested) -> None:
        """Compare, Configs and Runs ask for the Forecast view of a decision or run."""
        self.push_screen(ForecastScreen(message))

    def confirm_promote(self, model: str, symbol: str, on_done: Callable[[], Any] | None = None, *,
                        source: str = "pick", horizon: int | None = None, preset: str | None = None) -> None:
        """Confirm, then promote exactly the decision named: a pick at `horizon`, or the comparison row
        (source="comparison") identified by symbol, horizon, model and preset."""
        self.run_worker(decision_flows.confirm_promote(self, model, symbol, on_done, source, horizon, preset),
                        exit_on_error=False)

    def confirm_rollback(self, model: str, symbol: str, on_done: Callable[[], Any] | None = None) -> None:
        """Confirm, then restore the previously promoted config (console.decision_flows)."""
        self.run_worker(decision_flows.confirm_rollback(self, model, symbol, on_done), exit_on_error=False)

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

        self.push_screen(QuitScreen(running), chosen)

    async def shutdown(self, cancel_running: bool = False) -> None:
        if not self._closed:
            self._closed = True
            try:
                await self.services.close(cancel_running=cancel_running)
            except Exception as exc:  # noqa: BLE001
                self.log.error(f"closing services failed: {exc}")
        self.exit(0)

    async def on_unmount(self) -> None:
        if not self._closed:
            self._closed = True
            await self.services.close(cancel_running=False)


def run_console(args: argparse.Namespace) -> int:
    """Entry point used by console/cli.py when no sub-command is given."""
    data_dirs = None
    workspace = getattr(args, "workspace", None)
    if getattr(args, "data", None):
        from engine import paths

        ws = paths.workspace_dir(workspace)
        data_dirs = [Path(args.data).expanduser().resolve()]
        if (ws / "data").is_dir():
            data_dirs.append(ws / "data")
    services = ConsoleServices(
        workspace, data_dirs=data_dirs, hyperparams_dir=getattr(args, "hyperparams", None),
        backend=getattr(args, "backend", "local") or "local", address=getattr(args, "address", None),
    )
    app = ForecastConsoleApp(services)
    result = app.run()
    return int(result or 0)
