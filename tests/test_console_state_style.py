"""console.state_style: one style per job state, used by the Queue and Runs tables."""

from __future__ import annotations

from console.screens.queue import job_cells
from console.state_style import STATE_STYLE, state_cell
from engine.state import JobState, Status


def test_every_state_has_one_style_and_unknown_names_show_unstyled() -> None:
    assert set(STATE_STYLE) == set(Status)
    assert len(set(STATE_STYLE.values())) == len(Status)  # no two states look alike
    cell = state_cell("failed")
    assert (cell.value, cell.text, cell.style) == ("failed", "failed", STATE_STYLE[Status.FAILED])
    assert state_cell("someday").style == "" and state_cell(None).text == ""


def test_queue_rows_take_their_state_style_from_the_map() -> None:
    for status in Status:
        js = JobState(id=f"j-{status}", kind="train", symbols=("SPY",), model="chronos2", state=status)
        assert job_cells(js)["state"].style == STATE_STYLE[status]
