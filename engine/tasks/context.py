"""What a task gets from the worker: its spec's surroundings, an event writer, a cancel flag."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.events import EventWriter


@dataclass
class TaskContext:
    job_id: str
    workspace: Path
    job_dir: Path
    events: EventWriter
    device: str = "cpu"  # "cpu" or "cuda" (CUDA_VISIBLE_DEVICES already narrowed by the scheduler)
    data_dirs: list[Path] = field(default_factory=list)
    hyperparams_dir: Path | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        """True once SIGTERM arrived; long loops check it and stop at a safe point."""
        return self.cancel_event.is_set()

    @property
    def runs_dir(self) -> Path:
        return self.workspace / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.workspace / "reports"
