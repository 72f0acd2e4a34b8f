"""What a task gets from the worker: its spec's surroundings, an event writer, a cancel flag."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.events import EventWriter
from store.workspace import Workspace


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
    #: >0 while the task runs code that checks `cancelled()` and stops at a safe point by itself
    #: (e.g. a training loop that checkpoints). Outside such regions the worker aborts the task at
    #: once on SIGTERM: an import or a model load has nothing to save and may take longer than the
    #: grace period.
    cooperative_depth: int = 0

    def cancelled(self) -> bool:
        """True once SIGTERM arrived; long loops check it and stop at a safe point."""
        return self.cancel_event.is_set()

    @contextmanager
    def cooperative_cancel(self) -> Iterator[None]:
        """Mark a region that polls `cancelled()` itself, so SIGTERM only sets the flag inside it."""
        self.cooperative_depth += 1
        try:
            yield
        finally:
            self.cooperative_depth -= 1

    def each_symbol(self, symbols: Sequence[str], stage: str) -> Iterator[str]:
        """The job's symbols in turn, each announced as progress ("<stage> <SYMBOL>", i of n); stops
        early once the job is cancelled, so every per-symbol loop stops at a symbol boundary alike."""
        for i, symbol in enumerate(symbols):
            if self.cancelled():
                return
            self.events.progress(i, len(symbols), stage=f"{stage} {symbol}")
            yield symbol

    @property
    def runs_dir(self) -> Path:
        return Workspace(self.workspace).runs_dir

    @property
    def reports_dir(self) -> Path:
        return Workspace(self.workspace).reports_dir
