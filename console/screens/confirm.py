"""Generic yes/no confirmation modal (promote, rollback, retrain). Enter confirms, Esc cancels.

Why a modal: every action that writes outside the workspace (hyperparams/) or cancels work must be
seen before it happens, with the change spelled out.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "answer(False)", "Cancel", id="confirm-no"),
        Binding("y", "answer(True)", "Yes", id="confirm-yes"),
    ]

    def __init__(self, title: str, body: Any, confirm_label: str = "Confirm") -> None:
        super().__init__()
        self._title = title
        self.body = body
        self._confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog") as box:
            box.border_title = self._title
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, id="confirm-body")
            with Horizontal(classes="buttons"):
                yield Button(self._confirm_label, variant="primary", id="confirm-ok", compact=True)
                yield Button("Cancel", id="confirm-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-ok", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-ok")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
