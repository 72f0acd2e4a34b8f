"""Quit with running jobs: leave them running (default — they are detached) or cancel them.

Why default to leaving them: a job is a detached process writing its own event file; the next
console re-attaches to it, so quitting the UI must never silently kill hours of training.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str | None]):
    """Dismisses with "leave", "cancel" or None (stay in the console)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "choose(None)", "Stay", id="quit-stay"),
        Binding("l", "choose('leave')", "Leave running", id="quit-leave"),
        Binding("c", "choose('cancel')", "Cancel jobs", id="quit-cancel"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__()
        self.running = running

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="quit-dialog") as box:
            box.border_title = "Quit"
            yield Static(
                f"{self.running} job(s) still running. They run detached and the next console "
                "re-attaches to them.\n[dim]enter/l leave running · c cancel them · esc stay[/dim]",
                id="quit-body",
            )
            with Horizontal(classes="buttons"):
                yield Button("Leave running", variant="primary", id="leave", compact=True)
                yield Button("Cancel jobs", variant="error", id="cancel", compact=True)
                yield Button("Stay", id="stay", compact=True)

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"leave": "leave", "cancel": "cancel"}.get(event.button.id or ""))

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)
