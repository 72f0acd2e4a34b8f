"""`forecast-console gc [--older-than 30d] [--keep-failed] [--dry-run]`: retention for a workspace.

Why: nothing else ever removes anything — job folders (spec, events with a heartbeat every few
seconds, stderr), job records, and run artifacts (checkpoints, adapters, curves) pile up. This
removes old finished jobs (folder, record and saved forecasts) and the run folders no pick or
promotion names (engine.gc says exactly what). `--dry-run` reads the store and lists what would go; the real run is
a request to the workspace's engine service, the only store writer, so it works the same with or
without a console open.
"""

from __future__ import annotations

import argparse
import json
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' or a plain number of days → seconds."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"--older-than {text!r} is not a duration: use e.g. 30d, 12h, 90m")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gc", help="remove old job folders, their saved forecasts and unpromoted run artifacts",
                              description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("--older-than", default="30d", help="age cut-off (default 30d; s/m/h/d/w)")
    p.add_argument("--keep-failed", action="store_true", help="keep failed and interrupted jobs")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_gc)


def cmd_gc(args: argparse.Namespace) -> int:
    from engine import paths
    from engine.gc import Plan, plan_gc

    age = parse_duration(args.older_than)
    ws = paths.workspace_dir(args.workspace)
    hp = paths.hyperparams_dir(getattr(args, "hyperparams", None))
    if args.dry_run:
        from store import Store

        with Store.open(ws, readonly=True, hyperparams_dir=hp) as st:
            plan = plan_gc(st, age, args.keep_failed)
    else:
        from engine.client import JobClient

        plan = Plan.from_dict(JobClient(ws, hyperparams_dir=hp).gc(age, keep_failed=args.keep_failed))
    if args.json:
        print(json.dumps({**plan.to_dict(), "dry_run": bool(args.dry_run)}, indent=1))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for jid, folder in plan.jobs:
        print(f"{verb} job {jid}" + (f"  ({folder})" if folder else "  (record only)"))
    for rid, d in plan.run_dirs:
        print(f"{verb} run artifacts {d}  (run {rid}; its record stays)")
    for jid, d in plan.forecast_dirs:
        print(f"{verb} saved forecasts {d}  (job {jid})")
    print(f"{len(plan.jobs)} job(s), {len(plan.run_dirs)} run folder(s), {len(plan.forecast_dirs)} forecast "
          f"folder(s), {plan.bytes / 1e6:.1f} MB; {plan.kept_runs} old run(s) kept (picked or promoted)"
          + (f", {plan.kept_forecasts} job(s)' forecasts kept (a current pick or comparison)"
             if plan.kept_forecasts else "")
          + ("; dry run: nothing removed" if args.dry_run else ""))
    return 0
