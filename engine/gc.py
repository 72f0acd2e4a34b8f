"""Retention for a workspace: what `forecast-console gc` removes, planned and applied.

For what finished before the cut-off:
  * finished jobs: their folder under `jobs/` and their ledger record (queued/running ones never;
    with keep_failed, failed and interrupted ones stay, for a later look or a resume);
  * run artifacts: the run's folder under `runs/` — never one a current pick names or one that was
    ever promoted (the promotion audit, and the promoted files under hyperparams/). Run records stay
    in the ledger (they are small and the history of what was tried); their checkpoint is then gone,
    which `best(require_checkpoint=True)` already checks;
  * saved per-window forecasts: `forecasts/<job id>/` of a job removed now, or of a job whose record
    is already gone (removed by an earlier gc) when the folder is older than the cut-off — never of
    a job a current pick or comparison names (the Forecast view draws those decisions from them).
Planning only reads the store (a dry run needs no engine). Applying is done by the engine service
(its `gc` request), the only store writer, in its writer thread and in order with its own job writes,
so it works the same with or without a console open and never removes the folder of a job it watches
(only finished jobs are planned).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Plan:
    jobs: list[tuple[str, Path | None]] = field(default_factory=list)  # (job id, folder if present)
    run_dirs: list[tuple[str, Path]] = field(default_factory=list)  # (run id, artifact folder)
    kept_runs: int = 0  # old runs whose artifacts stay (picked or promoted)
    forecast_dirs: list[tuple[str, Path]] = field(default_factory=list)  # (job id, forecasts/<job id>)
    kept_forecasts: int = 0  # forecast folders of removed or gone jobs that a current decision names
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON: `jobs`, `run_dirs` and `forecast_dirs` as lists (what `gc --json` prints),
        plus the pairs (`job_folders`, `run_ids`, `forecast_jobs`, index-aligned) that `from_dict` reads back."""
        return {"jobs": [j for j, _ in self.jobs], "job_folders": [str(p) if p else None for _, p in self.jobs],
                "run_dirs": [str(p) for _, p in self.run_dirs], "run_ids": [r for r, _ in self.run_dirs],
                "forecast_dirs": [str(p) for _, p in self.forecast_dirs],
                "forecast_jobs": [j for j, _ in self.forecast_dirs],
                "kept_runs": self.kept_runs, "kept_forecasts": self.kept_forecasts, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        jobs = [(j, Path(f) if f else None) for j, f in zip(d["jobs"], d["job_folders"], strict=True)]
        runs = [(r, Path(p)) for r, p in zip(d["run_ids"], d["run_dirs"], strict=True)]
        fcs = [(j, Path(p)) for j, p in zip(d["forecast_jobs"], d["forecast_dirs"], strict=True)]
        return cls(jobs=jobs, run_dirs=runs, kept_runs=int(d["kept_runs"]), forecast_dirs=fcs,
                   kept_forecasts=int(d["kept_forecasts"]), bytes=int(d["bytes"]))


def _size(path: Path) -> int:
    try:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def _protected_runs(st: Any) -> set[str]:
    """Run ids a current pick names, that were ever promoted (the audit), or that a promoted file names now."""
    keep = {p.source_run for p in st.picks()}
    keep |= {e.run_id for e in st.promotions()}
    hp = Path(st.hyperparams_dir)
    if hp.is_dir():
        for f in hp.glob("*/*.json"):
            try:
                keep.add((json.loads(f.read_text(encoding="utf-8")).get("source") or {}).get("run_id"))
            except (OSError, ValueError, AttributeError):
                continue
    return {r for r in keep if isinstance(r, str)}


def _run_dir(st: Any, run: dict[str, Any]) -> Path | None:
    """The run's own folder directly under `runs/` (from its record), or None."""
    runs = st.workspace.runs_dir
    extra = run.get("extra") or {}
    for raw in (extra.get("run_dir"), run.get("checkpoint")):
        if not raw:
            continue
        p = Path(raw)
        p = (p if p.is_absolute() else st.workspace.root / p).resolve()
        while p.parent != runs and p != p.parent:
            p = p.parent
        if p.parent == runs and p.is_dir():
            return p
    return None


def _plan_forecasts(st: Any, plan: Plan, cutoff: float) -> None:
    """Add to `plan` the forecast folders whose job goes now or is gone (see the module docstring)."""
    root = st.workspace.forecasts_dir
    if not root.is_dir():
        return
    going = {j for j, _ in plan.jobs}
    named = {r.job_id for r in [*st.picks(), *st.comparisons()] if r.job_id}
    for d in sorted(root.iterdir()):
        if not d.is_dir():
            continue
        try:
            old = d.stat().st_mtime < cutoff
        except OSError:
            continue
        if not (d.name in going or (old and st.get_job(d.name) is None)):
            continue
        if d.name in named:
            plan.kept_forecasts += 1
            continue
        plan.forecast_dirs.append((d.name, d))
        plan.bytes += _size(d)


def plan_gc(st: Any, older_than_s: float, keep_failed: bool, now: float | None = None) -> Plan:
    """What would go (reads the store only)."""
    from engine.state import FINAL_STATES, Status

    cutoff = (now or time.time()) - older_than_s
    plan = Plan()
    states = [s for s in FINAL_STATES if not (keep_failed and s in (Status.FAILED, Status.INTERRUPTED))]
    for rec in st.jobs(state=[str(s) for s in states]):
        t = rec.get("finished_at") or rec.get("created_at") or 0
        if t >= cutoff:
            continue
        folder = st.workspace.job_dir(rec["id"])
        plan.jobs.append((rec["id"], folder if folder.is_dir() else None))
        plan.bytes += _size(folder) if folder.is_dir() else 0
    keep = _protected_runs(st)
    live_dirs = {d for r in st.runs(since=cutoff) if (d := _run_dir(st, r)) is not None}  # newer runs sharing one
    seen: set[Path] = set()
    for run in st.runs():
        if run["created_at"] >= cutoff:
            continue
        d = _run_dir(st, run)
        if d is None:
            continue
        if run["run_id"] in keep or d in live_dirs:
            plan.kept_runs += 1
            live_dirs.add(d)
            continue
        if d not in seen:
            seen.add(d)
            plan.run_dirs.append((run["run_id"], d))
    plan.run_dirs = [(r, d) for r, d in plan.run_dirs if d not in live_dirs]
    plan.bytes += sum(_size(d) for _, d in plan.run_dirs)
    _plan_forecasts(st, plan, cutoff)
    return plan


def apply_gc(st: Any, plan: Plan) -> None:
    """Remove the folders, then forget the job records (a folder left by a crash is removed next time)."""
    for _, folder in plan.jobs:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    for _, d in [*plan.run_dirs, *plan.forecast_dirs]:
        shutil.rmtree(d, ignore_errors=True)
    st.delete_jobs([j for j, _ in plan.jobs])


def collect(st: Any, older_than_s: float, keep_failed: bool) -> dict[str, Any]:
    """Plan and apply in one step (the engine service's `gc` request); the applied plan as JSON."""
    plan = plan_gc(st, older_than_s, keep_failed)
    apply_gc(st, plan)
    return plan.to_dict()
