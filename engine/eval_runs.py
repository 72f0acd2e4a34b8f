"""Reading the store for the evaluation jobs: which adapter run to use, at which horizon.

Read-only helpers shared by validate/compare/regression/calibrate (`engine.evaluation` re-exports
them): the newest run with a checkpoint on disk, the horizon a run or pick was made at.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def open_store_readonly(workspace: Path) -> Any | None:
    """The workspace store opened read-only, or None when the workspace has no store yet."""
    from store.store import Store

    if not (Path(workspace) / "store.json").exists():
        return None
    return Store.open(Path(workspace), readonly=True)


def _run_time(run: Mapping[str, Any]) -> Any:
    for key in ("finished_at", "created_at", "timestamp", "time", "started_at"):
        if run.get(key) is not None:
            return str(run[key])
    return str(run.get("run_id") or run.get("id") or "")


def latest_checkpoint_run(store: Any | None, model: str, symbol: str) -> dict[str, Any] | None:
    """The newest run for model+symbol whose checkpoint exists on disk (the adapter to use)."""
    if store is None or model == "naive":
        return None
    runs = [r for r in store.runs(model=model, symbol=symbol) if r.get("checkpoint")]
    runs = [r for r in runs if Path(str(r["checkpoint"])).exists()]
    if not runs:
        return None
    return max(runs, key=_run_time)


def _as_horizon(v: Any) -> int | None:
    try:
        h = int(v)
    except (TypeError, ValueError):
        return None
    return h if h > 0 else None


def run_horizon(run: Mapping[str, Any] | None) -> int | None:
    """The horizon a tracked run was trained/validated at (its hyperparams), None when unrecorded.

    Why: an adapter fine-tuned at H=64 should be evaluated at 64 unless the user asks otherwise."""
    if not run:
        return None
    return _as_horizon((run.get("hyperparams") or {}).get("horizon"))


def pick_horizon(pick: Any | None) -> int | None:
    """The horizon a pick (a store.records.Pick) was chosen at, None without a pick."""
    return int(pick.horizon) if pick is not None else None


def run_id_of(run: Mapping[str, Any] | None) -> str | None:
    if not run:
        return None
    for key in ("run_id", "id"):
        if run.get(key):
            return str(run[key])
    return None
