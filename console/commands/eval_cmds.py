"""`forecast-console validate | compare | regression | sweep | calibrate | pipeline`, headless.

Every command runs its work as real jobs in the workspace's engine service (queued, recorded in the
store by the engine, visible to every console), waits for them and prints the outcome; `sweep` and
`pipeline` submit their own job kind, whose coordinator submits the trials/steps. Submitting and
following is the shared path of `run`/`train` (console.commands.follow): progress goes to stderr,
Ctrl-C detaches (the jobs go on) and prints how to re-attach. No prompts anywhere.

Heavy imports stay inside the handlers so `forecast-console --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from console.commands.common import add_date_order, add_symbol_selection
from console.commands.params_cli import add_param_flags, params_from_args
from engine.models import FOUNDATION_MODELS, MODELS
from store.workspace import Workspace

MODEL_CHOICES = MODELS
FOUNDATION = FOUNDATION_MODELS


def _common(p: argparse.ArgumentParser, kind: str, *, model: str | None, models: bool = False,
            aliases: dict[str, str] | None = None) -> None:
    """Symbols, the model choice, every parameter of `kind` (engine.task_params) and --json."""
    add_symbol_selection(p, stocks_help="symbols to work on")
    if model == "required":
        p.add_argument("--model", required=True, choices=MODEL_CHOICES)
    elif model == "many":
        p.add_argument("--model", nargs="+", choices=MODEL_CHOICES, default=None,
                       help="models (default: every foundation model" + (" with a pick)" if models else ")"))
    add_param_flags(p, kind, skip=("models", "dayfirst"), aliases=aliases)
    add_date_order(p)  # the dayfirst parameter as --dayfirst / --monthfirst
    p.add_argument("--json", action="store_true", help="print the result payloads as JSON")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate", help="search inference parameters on validation, report the winner on test",
        description="Per model and symbol: search inference parameters (Toto samples x aggregation; Kronos "
        "temperature/top_p/top_k/samples/context/clip; Chronos-2 context x aggregation) on the validation span "
        "using the latest fine-tuned adapter when one exists; the winner becomes the pick and is reported on test.")
    _common(p, "validate", model="many")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser(
        "compare", help="all picked models + naive on identical test windows",
        description="Score every model's pick and naive persistence on the same windows: price MAE, MAE%, "
        "return MAE, MASE, CRPS, coverage, latency, DM p-value vs naive. Winner chosen on validation, reported on test.")
    _common(p, "compare", model="many", models=True)
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser(
        "regression", help="current vs previous pick vs naive; propose retrains",
        description="Re-score each model's current pick, previous pick and naive persistence on the same windows; "
        "flag what got worse beyond --threshold and propose retrain + validate jobs.")
    _common(p, "regression", model="many", models=True, aliases={"threshold_pct": "--threshold"})
    p.add_argument("--submit-proposals", action="store_true", help="queue the proposed retrain/validate jobs now")
    p.set_defaults(func=cmd_regression)

    p = subparsers.add_parser(
        "calibrate", help="affine scale/bias on validation, judged on test",
        description="Fit an affine correction of predicted returns on validation; keep it only if it improves "
        "held-out validation windows; test is reported either way.")
    _common(p, "calibrate", model="required")
    p.set_defaults(func=cmd_calibrate)

    p = subparsers.add_parser(
        "sweep", help="Optuna search over training settings; each trial is a train job",
        description="Hyperparameter search over training settings. Modes: priority (research-backed configs), "
        "quick (small grid), full (grid), auto (TPE + median pruning on per-epoch validation loss). The study is "
        "stored in <workspace>/sweeps/ and continues where it stopped. The sweep is a job in the engine service: "
        "Ctrl-C detaches (re-attach with `forecast-console attach ID`); `cancel ID` stops it and its trial, and "
        "re-running the same command resumes that trial from its checkpoint.")
    _common(p, "sweep", model="required", aliases={"vram_gb": "--vram"})
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser(
        "pipeline", help="baseline -> train -> validate -> compare -> regression -> report, resumable",
        description="Run the whole evaluation pipeline without prompts. Idempotent: re-running skips finished "
        "steps, waits for running ones and resubmits failed/interrupted ones (state in <workspace>/pipelines/).")
    _common(p, "pipeline", model="many")
    p.set_defaults(func=cmd_pipeline)


# ---------------------------------------------------------------------------------------------


def _workspace() -> Path:
    from engine import paths

    return paths.workspace_dir()


def _symbols(args: argparse.Namespace) -> list[str]:
    from console.commands.baseline_cmd import _resolve_symbols
    from engine import paths

    return _resolve_symbols(args, paths.data_dirs(_workspace()))


def _run_specs(specs: list[Any]) -> list[tuple[Any, str, dict[str, Any] | None]] | None:
    """Submit, follow, and return (spec, final state, result payload) per spec; None on Ctrl-C (detached).

    The shared submit/follow path of `run` and `train` (console.commands.follow, through the engine
    service); progress on stderr so stdout carries only the answer (--json).
    """
    from console.cli import CliError
    from console.commands.follow import run_jobs

    outcomes = run_jobs(_workspace(), specs)
    if outcomes is None:
        return None
    out = [(o.spec, o.state, o.result) for o in outcomes]
    if any(st != "succeeded" for _, st, _ in out):
        failed = [f"{s.kind} {s.model or ''}".strip() for s, st, _ in out if st != "succeeded"]
        raise CliError(f"{len(failed)} job(s) did not succeed: {', '.join(failed)} (see `forecast-console jobs`)")
    return out


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=1, default=str))


def _spec(kind: str, symbols: list[str], model: str | None, params: dict[str, Any] | None) -> Any:
    from engine.jobs import JobSpec

    return JobSpec.create(kind, symbols, model, params=params)


def _run_one(kind: str, args: argparse.Namespace, model: str | None, params: dict[str, Any]) -> dict[str, Any] | None:
    """Submit one job on the requested symbols, follow it, return its result payload; None when detached.

    `compare`, `regression` and `calibrate` each run exactly one job; `--model` (when given as a list)
    becomes the job's `models` parameter.
    """
    if isinstance(args.model, list) and args.model:
        params["models"] = list(args.model)
    done = _run_specs([_spec(kind, _symbols(args), model, params)])
    if done is None:
        return None  # detached: the job goes on (the re-attach command was printed)
    (res,) = done
    return res[2] or {}


def cmd_validate(args: argparse.Namespace) -> int:
    from engine.tasks.report import fmt

    syms = _symbols(args)
    models = args.model or list(FOUNDATION)
    specs = [_spec("validate", syms, m, params_from_args(args, "validate")) for m in models]
    res = _run_specs(specs)
    if res is None:
        return 0  # detached: the jobs go on (the re-attach commands were printed)
    if args.json:
        _print_json([r for _, _, r in res])
        return 0
    for _, _, r in res:
        for p in (r or {}).get("picks", []):
            print(f"{p['model']:9s} {p['symbol']:8s} val MAE% {fmt(p['validation'].get('mae_pct'))} "
                  f"(naive {fmt(p['naive']['validation'].get('mae_pct'))})  test MAE% {fmt(p['test'].get('mae_pct'))} "
                  f"(naive {fmt(p['naive']['test'].get('mae_pct'))})  {p['candidates']} candidates  "
                  f"config {json.dumps(p['config'])}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from engine.tasks.report import comparison_markdown

    payload = _run_one("compare", args, None, params_from_args(args, "compare"))
    if payload is None:
        return 0
    if args.json:
        _print_json(payload)
        return 0
    print(comparison_markdown(payload.get("comparisons", [])))
    print(f"\nreport: {payload.get('summary', {}).get('report')}")
    return 0


def cmd_regression(args: argparse.Namespace) -> int:
    from engine.tasks.report import regression_markdown

    payload = _run_one("regression", args, None, params_from_args(args, "regression"))
    if payload is None:
        return 0
    rows = payload.get("regressions", [])
    if args.json:
        _print_json(payload)
    else:
        print(regression_markdown(rows) if rows else "no picks to check (run validate first)")
        print(f"\nreport: {payload.get('summary', {}).get('report')}")
    proposals = [j for r in rows for j in r.get("proposed_jobs", [])]
    if proposals and args.submit_proposals:
        _run_specs([_spec(j["kind"], j["symbols"], j.get("model"), j.get("params")) for j in proposals])
    elif proposals:
        print(f"{len(proposals)} job(s) proposed; re-run with --submit-proposals to queue them")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    payload = _run_one("calibrate", args, args.model, params_from_args(args, "calibrate"))
    if payload is None:
        return 0
    if args.json:
        _print_json(payload)
        return 0
    for sym, verdict in payload.get("summary", {}).get("verdicts", {}).items():
        print(f"{args.model} {sym}: {verdict}")
    print(f"report: {payload.get('summary', {}).get('report')}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Submit one `sweep` job (its coordinator runs in the engine service) and follow it."""
    from console.cli import CliError
    from engine.task_params import SweepParams

    if args.model == "naive":
        raise CliError(f"a sweep needs a foundation model ({', '.join(FOUNDATION_MODELS)})")
    params = params_from_args(args, "sweep")
    SweepParams.of(params)  # refused here, before anything is queued
    payload = _run_one("sweep", args, args.model, params)
    if payload is None:
        return 0  # detached: the sweep goes on in the engine (the re-attach command was printed)
    studies = (payload.get("summary") or {}).get("studies") or {}
    if args.json:
        _print_json(studies)
        return 0
    for sym, r in studies.items():
        best = r.get("best")
        print(f"{args.model} {sym}: study {r.get('study')} trials {r.get('trials')} best "
              + (f"{best['value']:.4g} {best['params']} (job {best['job_id']})" if best else "none"))
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Submit one `pipeline` job (its steps are engine jobs) and follow it; re-running resumes."""
    from console.cli import CliError
    from engine.task_params import PipelineParams
    from engine.tasks.pipeline import pipeline_name

    syms = _symbols(args)
    models = [m for m in (args.model or list(FOUNDATION)) if m != "naive"]
    if not models:
        raise CliError("the pipeline needs at least one foundation model")
    params = params_from_args(args, "pipeline")
    pp = PipelineParams.of(params)
    name = pp.name or pipeline_name(syms, pp.preset, pp.horizon, models)
    params = {**params, "models": models, "name": name}
    t0 = time.time()
    done = _run_specs([_spec("pipeline", syms, None, params)])
    if done is None:
        return 0  # detached: the pipeline job goes on; re-running the command resumes its state file
    status = (done[0][2] or {}).get("summary") or {}
    wall = time.time() - t0
    if args.json:
        _print_json({**status, "wall_s": wall})
        return 0
    for s in status.get("steps", []):
        print(f"{s['name']:20s} {s['state']:10s} {(s['seconds'] or 0):7.1f} s  {', '.join(s['jobs'])}")
    reports = sorted(Workspace(_workspace()).reports_dir.glob(f"report-{name}-*.md"))
    print(f"pipeline {name}: done in {wall:.1f} s; report {reports[-1] if reports else 'n/a'}")
    return 0
