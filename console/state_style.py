"""How every console screen shows a job's (or a run's) state: one style per engine.state.Status.

Why one map: the Queue, Runs and other tables each colouring the same state names their own way
made "failed" bold red on one screen and plain red on the next, and a new state would have to be
added to each. Keys are `Status` members (plain strings, so a record's `state` looks them up as it
is); an unknown name shows unstyled rather than failing.
"""

from __future__ import annotations

from console.widgets.table import Cell
from engine.state import Status

STATE_STYLE: dict[str, str] = {
    Status.QUEUED: "dim",
    Status.RUNNING: "bold cyan",
    Status.SUCCEEDED: "green",
    Status.FAILED: "bold red",
    Status.CANCELLED: "yellow",
    Status.INTERRUPTED: "magenta",
}


def state_cell(state: str | None) -> Cell:
    """A table cell showing `state` in its style (sorted by its name)."""
    return Cell(state, state or "", style=STATE_STYLE.get(state or "", ""))
