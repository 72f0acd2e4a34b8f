"""Every message between the console app and its screens (Textual `Message`s handled with `@on`).

Why messages: a screen asks the app for what only the app can do (queue a job, open a dialog,
switch to Live) by posting a request that bubbles up to the app; the app hands engine updates,
telemetry and "re-read now" to the visible mode screen by posting to it. Neither side calls the
other's methods or writes the other's state, so a screen can be driven (and tested) by the
messages it receives and checked by the messages it posts.

Requests (screen → app) bubble up to the app; notices (app → screen, `bubble=False`) are posted to
the screen and stop there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from textual.message import Message

# ---------------------------------------------------------------------- screen → app


class StartRunRequested(Message):
    """Open the start-run form for the symbols selected on Stocks (`kind` preselected, else the last used)."""

    def __init__(self, kind: str | None = None) -> None:
        super().__init__()
        self.kind = kind


class SelectionChanged(Message):
    """Stocks: the symbols now selected (what the run form and the regression check act on)."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__()
        self.symbols = sorted(symbols)


class QueueJobRequested(Message):
    """Validate and queue one job over `symbols` (errors are notified, nothing queued)."""

    def __init__(self, kind: str, symbols: Sequence[str], model: str | None = None,
                 params: Mapping[str, Any] | None = None, priority: int = 0, quiet: bool = False) -> None:
        super().__init__()
        self.kind, self.symbols, self.model = kind, list(symbols), model
        self.params, self.priority, self.quiet = dict(params or {}), priority, quiet


class OpenLiveRequested(Message):
    """Switch to the Live screen showing `job_id`."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


class PromoteRequested(Message):
    """Confirm, then promote exactly this decision: a pick at `horizon` (source="pick"), or the comparison
    row identified by symbol, horizon, model and preset (source="comparison")."""

    def __init__(self, model: str, symbol: str, source: str = "pick", horizon: int | None = None,
                 preset: str | None = None) -> None:
        super().__init__()
        self.model, self.symbol, self.source, self.horizon, self.preset = model, symbol, source, horizon, preset


class RollbackRequested(Message):
    """Confirm, then restore the config of (model, symbol) promoted before the current one."""

    def __init__(self, model: str, symbol: str) -> None:
        super().__init__()
        self.model, self.symbol = model, symbol


class ForecastRequested(Message):
    """Open the Forecast view of a decision or run (Compare, Configs and Runs post it; the app pushes it)."""

    def __init__(self, symbol: str, model: str, horizon: int | None, preset: str | None,
                 job_ids: Sequence[str | None] = ()) -> None:
        super().__init__()
        self.symbol, self.model, self.horizon, self.preset = symbol, model, horizon, preset
        self.job_ids = [j for j in job_ids if j]


# ---------------------------------------------------------------------- app → screen


class WorkspaceOpened(Message, bubble=False):
    """The store and the engine service are open: re-read what the screen shows."""


class JobsUpdated(Message, bubble=False):
    """One batch of the update pump: the jobs that changed, their new loss points and log lines, and
    those that reached a final state for the first time (their results are about to be in the store)."""

    def __init__(self, job_ids: set[str], losses: dict[str, list[dict[str, Any]]], logs: dict[str, list[str]],
                 finished: set[str]) -> None:
        super().__init__()
        self.job_ids, self.losses, self.logs, self.finished = job_ids, losses, logs, finished


class TelemetrySampled(Message, bubble=False):
    """A new GPU telemetry sample, with pid → our job id for the processes it shows."""

    def __init__(self, telemetry: Any, job_pids: dict[int, str]) -> None:
        super().__init__()
        self.telemetry, self.job_pids = telemetry, job_pids


class JobQueued(Message, bubble=False):
    """The console queued a job (screens that list jobs show it without waiting for its first event)."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id


class DecisionsChanged(Message, bubble=False):
    """A promotion or rollback from this console changed `hyperparams/`: re-read the decisions shown."""


class ShowJob(Message, bubble=False):
    """Live: show this job (its whole curve and log tail)."""

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
