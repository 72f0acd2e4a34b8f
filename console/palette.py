"""The command palette's entries: every app action, then the visible screen's own actions.

Why a Provider of our own: Textual's palette lists only what a provider yields, and the console's
actions (switch screen, start a run of any kind, theme, quit) plus each mode screen's actions
(`ModeScreen.palette_commands`) should all be searchable from one place (ctrl+p).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from console.screens.base import ModeScreen
from console.widgets.nav import NAV_ITEMS

if TYPE_CHECKING:
    from console.app import ForecastConsoleApp

#: (title, help text, callback) of one palette entry.
Entry = tuple[str, str, Callable[[], Any]]


def palette_entries(app: ForecastConsoleApp, screen: Screen) -> Iterable[Entry]:
    """The app's entries, then those of `screen` (or of the mode screen under a dialog)."""
    from console.screens.start_run import FORM_KINDS  # imported as the palette opens

    for mode, key, label in NAV_ITEMS:
        yield (f"Go to {label} screen", f"Switch screen (key {key})", partial(app.switch_mode, mode))
    for kind in FORM_KINDS:
        yield (f"Start {kind} run…", f"Open the run form for the selected symbols ({kind})",
               partial(app.action_start_run, kind))
    yield ("Toggle dark/light theme", "ctrl+t", app.action_toggle_theme)
    yield ("Quit console", "Ask about running jobs first", lambda: app.run_worker(app.action_request_quit()))
    scr = screen if isinstance(screen, ModeScreen) else app.mode_screen()
    if scr is not None:
        yield from scr.palette_commands()


class ConsoleCommands(Provider):
    """Command-palette provider over `palette_entries`."""

    def _commands(self) -> list[Entry]:
        app: ForecastConsoleApp = self.app  # type: ignore[assignment]
        return list(palette_entries(app, self.screen))

    async def discover(self) -> Hits:
        for title, help_text, cb in self._commands():
            yield DiscoveryHit(title, cb, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, cb in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), cb, help=help_text)
