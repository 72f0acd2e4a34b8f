"""A mode screen with a filter line that the keyboard edits without moving the focus (Stocks, Runs).

Why: Textual resolves a key's binding when the key reaches the app, against the focus (and state)
of that moment, so a focus change while keys were in flight sent them to the wrong widget: typing
`/NV` fast moved the focus to the filter only after `N` and `V` had gone to the table (Runs: `o`
flipped the order, `f` opened the Forecast view; Stocks: a stale row toggled, a selection lost).
So `/` starts filtering and the screen itself edits the filter from the keys that reach it
(`on_key`), one queue, in the order they were typed; the screen's own bindings run there too, in
order with the filter's keys. Enter ends filtering and keeps the filter; Esc clears it (while typing
or after); arrows and page keys stay the table's. Keys that change the screen are console.key_handover's
concern: the app sends the key after one only once the new screen is current, so none of them reaches
this screen's `on_key` while it is being left.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.widgets import Input

from console.screens.base import ModeScreen
from console.widgets.table import KeyedTable


class FilterScreen(ModeScreen):
    """Base of a screen with a filter `Input` (`FILTER_ID`) over a `KeyedTable` (`table`)."""

    FILTER_ID: ClassVar[str] = ""
    #: Textual focuses the first focusable widget when a screen is composed or resumed with nothing
    #: focused: that is the filter field, and keys typed while the console starts (`/NV`) went into it
    #: as text, `/` included. The table is where these screens read their keys.
    AUTO_FOCUS: ClassVar[str | None] = "KeyedTable"
    #: The filter's placeholder while the keyboard types into it.
    EDITING_PLACEHOLDER: ClassVar[str] = "type to filter · enter done · esc clears"
    filtering = False
    _placeholder = ""

    @property
    def table(self) -> KeyedTable:
        raise NotImplementedError

    @property
    def filter_input(self) -> Input:
        return self.query_one(self.FILTER_ID, Input)

    def action_focus_filter(self) -> None:
        self.filtering = True
        f = self.filter_input
        f.add_class("-editing")
        self._placeholder = self._placeholder or f.placeholder
        f.placeholder = self.EDITING_PLACEHOLDER

    def end_filter(self) -> None:
        """Stop filtering: apply what was typed at once, back to the table's first row."""
        self.filtering = False
        f = self.filter_input
        f.remove_class("-editing")
        f.placeholder = self._placeholder or f.placeholder
        self.apply_filter_now()
        if self.focused is f:  # it was clicked into
            self.set_focus(self.table)
        if self.table.row_count:
            self.table.move_cursor(row=0)  # the first match, not a row left from before

    def apply_filter_now(self) -> None:
        """Show the rows of the filter as typed now (override)."""

    def filter_key(self, event: events.Key) -> bool:
        """A key with a meaning of its own while filtering (Stocks: space selects); True if handled."""
        return False

    async def on_key(self, event: events.Key) -> None:
        f = self.filter_input
        if event.key == "escape" and (self.filtering or self.focused is f or f.value):
            f.value = ""  # Esc is "no filter": the way back to every row, typed or applied
            self.end_filter()
        elif not self.filtering:
            # This screen's own keys (/, s, space, ...) run here, in order with the filter's keys, not
            # later when the key reaches the app (by then the keys typed after it were handled).
            active = self.active_bindings.get(event.key)
            if self.focused is f or active is None or active.node is not self or not active.enabled:
                return
            event.stop()
            event.prevent_default()
            await self.run_action(active.binding.action)
            return
        elif event.key == "enter":
            self.end_filter()
        elif self.filter_key(event):
            pass
        elif event.key == "backspace":
            f.value = f.value[:-1]
            f.cursor_position = len(f.value)
        elif event.is_printable and event.character:
            f.value += event.character
            f.cursor_position = len(f.value)
        else:
            return  # arrows, page keys: still the table's
        event.stop()
        event.prevent_default()
