"""The workspace folder: one place for the store, job folders, run artefacts and reports.

Layout (docs/ARCHITECTURE.md, Contracts):

    <root>/store.json        TinyDB (small: no per-step data)
    <root>/store.lock        the single-writer lock (names its holder)
    <root>/jobs/<id>/        spec.json, events.jsonl, stderr.log
    <root>/runs/<run_id>/    curve.jsonl, checkpoint or adapter, config.json
    <root>/reports/          markdown / CSV reports
    <root>/forecasts/<job>/  per-window forecasts of a validate/compare job (store.forecasts)

Ids become folder names, so they are checked here once: nothing can walk out of the workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.names import JOBS_DIR, PathNameError, validate_name
from engine.symbols import validate_symbol
from store.storage import StoreError


def check_id(kind: str, value: str) -> str:
    """An id that is safe as a single path component (engine.names), else StoreError saying why."""
    try:
        return validate_name(f"{kind} id", value)
    except PathNameError as exc:
        raise StoreError(str(exc)) from None


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace folder (nothing is created until `ensure()`)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root).expanduser().resolve())

    @property
    def store_file(self) -> Path:
        return self.root / "store.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "store.lock"

    @property
    def jobs_dir(self) -> Path:
        return self.root / JOBS_DIR

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def forecasts_dir(self) -> Path:
        return self.root / "forecasts"

    def forecast_file(self, job_id: str, symbol: str, horizon: int) -> Path:
        """`forecasts/<job id>/<SYMBOL>-h<H>.npz`: one validate/compare job's forecasts of one symbol."""
        return self.forecasts_dir / check_id("job", job_id) / f"{validate_symbol(symbol)}-h{int(horizon)}.npz"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / check_id("job", job_id)

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / check_id("run", run_id)

    def ensure(self) -> Workspace:
        """Create the folders; a path that exists but is not a folder is a clear error."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"workspace {self.root} exists and is not a folder")
        for d in (self.root, self.jobs_dir, self.runs_dir, self.reports_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self
