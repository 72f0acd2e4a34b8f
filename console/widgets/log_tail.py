"""A bounded, word-wrapping log tail for the Live view.

Why not `Log`: it never wraps, so long lines (tracebacks, paths, hyperparameter dumps) were cut at
the right edge. `RichLog(wrap=True)` wraps but renders each line once at the width it had when
written, and its `min_width` (78) would keep narrow panes from wrapping at all. This widget keeps the
last `max_lines` raw lines (a deque, so memory and work stay bounded), wraps at the pane width,
reserves the scrollbar gutter so the width never shifts when the scrollbar appears, and re-wraps
the kept lines only when the pane's width actually changes (rare: resize or the narrow layout).
Its height is set by the stylesheet, never by its lines, so a new line updates its scrollbar (the
public ScrollBar reactives) and repaints it without re-laying out the whole screen (a layout per
update batch was the Live screen's largest steady cost with 24 jobs streaming: bench/bench_console.py);
only the one change that shows or hides the scrollbar re-lays out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Self

from rich.text import Text
from textual.events import Resize
from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import RichLog


class LogTail(RichLog):
    """Word-wrapped tail of the last `max_lines` log lines (plain text, no markup)."""

    DEFAULT_CSS = """
    LogTail {
        scrollbar-gutter: stable;
        overflow-x: hidden;
    }
    """

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        height = self.scrollable_content_region.height
        overflows = size.height > height
        if overflows and not self.show_vertical_scrollbar:
            self.show_vertical_scrollbar = True  # a layout: once, when the lines first overflow
        if overflows:
            bar = self.vertical_scrollbar
            bar.window_virtual_size = size.height
            bar.window_size = height
        self.refresh()

    def __init__(self, max_lines: int = 200, *, id: str | None = None) -> None:  # noqa: A002
        # RichLog's max_lines counts wrapped (visual) lines: also bounded by the same number.
        super().__init__(max_lines=max_lines, min_width=1, wrap=True, markup=False, highlight=False,
                         auto_scroll=True, id=id)
        #: The kept lines, unwrapped (names without a leading underscore: that namespace is Textual's).
        self.kept: deque[str] = deque(maxlen=max_lines)
        #: The width the kept lines are wrapped at; 0 until the first resize.
        self.wrap_width = 0

    def write_lines(self, lines: Iterable[str]) -> Self:
        """Append lines (the `Log.write_lines` call the Live screen makes)."""
        for line in lines:
            self.kept.append(line)
            self.write(Text(line))
        return self

    def clear(self) -> Self:
        self.kept.clear()
        return super().clear()

    @property
    def raw_lines(self) -> list[str]:
        """The kept (unwrapped) lines, oldest first."""
        return list(self.kept)

    def on_resize(self, event: Resize) -> None:
        """Re-wrap the kept lines when the width changes (RichLog renders each line only once)."""
        width = self.scrollable_content_region.width
        if not self.wrap_width:  # the first size: RichLog's own handler writes the deferred lines at it
            self.wrap_width = width
            return
        if width == self.wrap_width or width <= 0:
            return
        self.wrap_width = width
        raw = list(self.kept)
        super().clear()
        for line in raw:
            self.write(Text(line))
