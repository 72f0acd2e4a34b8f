"""Top navigation strip: one clickable tab per screen, the current one highlighted.

Why not Tabs: the screens are app modes (each keeps its own state); this strip only mirrors
`app.current_mode` and switches mode on click, so keys 1–8 and the mouse do the same thing.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import Static

#: (mode, key, label) in display order.
NAV_ITEMS: tuple[tuple[str, str, str], ...] = (
    ("stocks", "1", "Stocks"),
    ("queue", "2", "Queue"),
    ("live", "3", "Live"),
    ("compare", "4", "Compare"),
    ("regressions", "5", "Regress"),
    ("configs", "6", "Configs"),
    ("gpu", "7", "GPU"),
    ("runs", "8", "Runs"),
)


class NavBar(Static):
    """Renders the tabs; a click on a tab switches to that mode."""

    DEFAULT_CSS = """
    NavBar {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text-muted;
    }
    """

    def __init__(self, current: str, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.current = current
        self._spans: list[tuple[int, int, str]] = []

    def on_mount(self) -> None:
        self.update(self._render_tabs())

    def _render_tabs(self) -> Text:
        text = Text()
        self._spans = []
        for mode, key, label in NAV_ITEMS:
            start = len(text)
            chunk = f" {key} {label} "
            style = "bold reverse" if mode == self.current else ""
            text.append(chunk, style=style)
            self._spans.append((start, len(text), mode))
        return text

    def on_click(self, event: events.Click) -> None:
        for start, end, mode in self._spans:
            if start <= event.x < end and mode != self.current:
                self.app.switch_mode(mode)
                return
