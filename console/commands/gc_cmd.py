"""`forecast-console gc [--older-than 30d] [--keep-failed] [--dry-run]`: retention for a workspace.

Why: nothing else ever removes anything — job folders (spec, events with a heartbeat every few
seconds, stderr), job records, and run artifacts (checkpoints, adapters, curves) pile up. This
removes, for what finished before the cut-off:
  * finished jobs: their folder under `jobs/` and their ledger record (queued/running ones never;
    with --keep-failed, failed and interrupted ones stay, for a later look or a resume);
  * run artifacts: the run's folder under `runs/` — never one a current pick names or one that was
    ever promoted (the promotion audit, and the promoted files under hyperparams/). Run records stay
    in the ledger (they are small and the history of what was tried); their checkpoint is then gone,
    which `best(require_checkpoint=True)` already checks.
`--dry-run` lists what would go and frees nothing. It needs the workspace's write lock (a running
console holds it): the engine is the only writer, and it must not lose a folder under a job it watches.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' or a plain number of days → seconds."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"--older-than {text!r} is not a duration: use e.g. 30d, 12h, 90m")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("gc", help="remove old job folders and unpromoted run artifacts",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--older-than", default="30d", help="age cut-off (default 30d; s/m/h/d/w)")
    p.add_argument("--keep-failed", action="store_true", help="keep failed and interrupted jobs")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_gc)


@dataclass
class Plan:
    jobs: list[tuple[str, Path | None]] = field(default_factory=list)  # (job id, folder if present)
    run_dirs: list[tuple[str, Path]] = field(default_factory=list)  # (run id, artifact folder)
    kept_runs: int = 0  # old runs whose artifacts stay (picked or promoted)
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"jobs": [j for j, _ in self.jobs], "run_dirs": [str(p) for _, p in self.run_dirs],
                "kept_runs": self.kept_runs, "bytes": self.bytes}


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
    keep.discard(None)
    return keep  # type: ignore[return-value]


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


def plan_gc(st: Any, older_than_s: float, keep_failed: bool, now: float | None = None) -> Plan:
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
    return plan


def apply_gc(st: Any, plan: Plan) -> None:
    """Remove the folders, then forget the job records (a folder left by a crash is removed next time)."""
    for _, folder in plan.jobs:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    for _, d in plan.run_dirs:
        shutil.rmtree(d, ignore_errors=True)
    st.delete_jobs([j for j, _ in plan.jobs])


def cmd_gc(args: argparse.Namespace) -> int:
    from engine import paths
    from store import Store

    age = parse_duration(args.older_than)
    ws = paths.workspace_dir(args.workspace)
    with Store.open(ws, hyperparams_dir=paths.hyperparams_dir(getattr(args, "hyperparams", None))) as st:
        plan = plan_gc(st, age, args.keep_failed)
        if args.json:
            print(json.dumps({**plan.to_dict(), "dry_run": bool(args.dry_run)}, indent=1))
        else:
            verb = "would remove" if args.dry_run else "removing"
            for jid, folder in plan.jobs:
                print(f"{verb} job {jid}" + (f"  ({folder})" if folder else "  (record only)"))
            for rid, d in plan.run_dirs:
                print(f"{verb} run artifacts {d}  (run {rid}; its record stays)")
            print(f"{len(plan.jobs)} job(s), {len(plan.run_dirs)} run folder(s), {plan.bytes / 1e6:.1f} MB; "
                  f"{plan.kept_runs} old run(s) kept (picked or promoted)"
                  + ("; dry run: nothing removed" if args.dry_run else ""))
        if not args.dry_run:
            apply_gc(st, plan)
    return 0
