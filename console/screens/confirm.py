"""Generic yes/no confirmation modal (promote, rollback, retrain). Enter confirms, Esc cancels.

Why a modal: every action that writes outside the workspace (hyperparams/) or cancels work must be
seen before it happens, with the change spelled out. Warnings (e.g. "loses to naive on test") sit
on their own lines between the scrolling body and the buttons, so they are on screen however long
the body is, and the confirm button then says "… anyway".
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def __init__(self, title: str, body: Any, confirm_label: str = "Confirm", *,
                 warnings: Sequence[str] = ()) -> None:
        super().__init__()
        self._title = title
        self.body = body
        self.warnings = list(warnings)
        self._confirm_label = f"{confirm_label} anyway" if self.warnings else confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-dialog") as box:
            box.border_title = self._title
            with VerticalScroll(classes="dialog-body"):
                yield Static(self.body, id="confirm-body")
            if self.warnings:
                yield Static("\n".join(f"⚠ {w}" for w in self.warnings), id="confirm-warning", classes="warning")
            with Horizontal(classes="buttons"):
                yield Button(self._confirm_label, variant="primary", id="confirm-ok", compact=True)
                yield Button("Cancel", id="confirm-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-ok", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-ok")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
