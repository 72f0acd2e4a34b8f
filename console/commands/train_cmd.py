"""`forecast-console train`: fine-tune a foundation model per symbol, headless, with live progress.

A thin front-end over `forecast-console run train`: it builds the train JobSpec, checks at submit
what can be checked without torch (the CSV loads, the planner accepts the settings and they leave
windows, pretrained weights are at hand), prints the per-symbol plan the job will use, and then
goes through exactly the same submit/follow path as `run` (console.commands.follow): its own engine,
or the running console's spool; --detach launches the job before returning; Ctrl-C detaches and
says how to re-attach. `--in-process` runs the task in this process instead (no store record;
useful for debugging). Heavy modules are imported inside the handler so `--help` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from console.commands.params_cli import add_param_flags, params_from_args
from engine.models import FOUNDATION_MODELS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help=f"fine-tune {', '.join(FOUNDATION_MODELS)} per symbol (LoRA; full for --preset tiny)",
        description="Fine-tune a model on each symbol's train span, early-stop on its validation span, and "
        "record the run (adapter, metrics, loss curve) in the workspace. Unset settings come from the "
        "per-stock plan (rows and difficulty → context, horizon, loss, LoRA rank, lr, epochs); the tiny preset "
        "trains all weights (finetune full) with its native loss at 10x the lr, context at most 128.")
    p.add_argument("--stocks", nargs="+", required=True, metavar="SYMBOL", help="symbols to train on, in turn")
    p.add_argument("--model", required=True, choices=FOUNDATION_MODELS)
    add_param_flags(p, "train")  # every TrainParams field (engine.task_params)
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs the job needs (0 = CPU slot)")
    p.add_argument("--in-process", action="store_true", help="run here instead of as an engine job (no store record)")
    p.add_argument("--detach", action="store_true", help="submit and return without following progress")
    p.set_defaults(func=cmd_train)


def _fmt_eta(s: Any) -> str:
    return "—" if s is None else f"{int(s) // 60}:{int(s) % 60:02d}"


def _print_runs(runs: list[dict[str, Any]]) -> None:
    for r in runs:
        m = r.get("metrics") or {}
        print(f"{r['symbol']:8s} {r['model']:8s} val_loss {m.get('val_loss', float('nan')):.4f}  "
              f"val MAE% {m.get('val_mae_pct', float('nan')):.3f} (naive {m.get('val_naive_mae_pct', float('nan')):.3f})  "
              f"adapter {r.get('checkpoint')}")


def _in_process(spec: Any, workspace: Path) -> int:
    import threading

    from engine import paths
    from engine.events import EventWriter, read_events
    from engine.jobs import JobDir
    from engine.tasks import train as task
    from engine.tasks.context import TaskContext

    jd = JobDir.of(workspace, spec.id)
    job_dir = jd.path
    job_dir.mkdir(parents=True, exist_ok=True)
    spec.write(job_dir)
    ev = EventWriter(jd.events, spec.id)
    ctx = TaskContext(job_id=spec.id, workspace=workspace, job_dir=job_dir, events=ev,
                      data_dirs=paths.data_dirs(workspace))
    stop = threading.Event()

    def follow() -> None:
        off = 0
        while not stop.wait(0.5):
            chunk = read_events(jd.events, off)
            off = chunk.offset
            for e in chunk.events:
                _show(e)

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        out = task.run(spec, ctx)
    finally:
        stop.set()
        t.join()
        ev.close()
    _print_runs(out["runs"])
    print("(ran in-process: the run is not in the store; submit without --in-process to record it)")
    return 0


def _show(e: dict[str, Any]) -> None:
    typ = e.get("type")
    if typ == "loss":
        val = e.get("val")
        print(f"  epoch {e.get('epoch')} step {e.get('step')} train {e.get('train'):.4f}"
              + (f" val {val:.4f}" if val is not None else ""), flush=True)
    elif typ == "log":
        print(f"  [{e.get('level')}] {e.get('msg')}", flush=True)
    elif typ == "progress":
        print(f"  progress {e.get('done')}/{e.get('total')} eta {_fmt_eta(e.get('eta_s'))}", flush=True)


def _check_weights(model: str, params: dict[str, Any]) -> str | None:
    """Pretrained presets: the weights must be at hand (local directory or Hugging Face cache) unless the
    hub is reachable (then the job downloads them). Torch-free and fast: no model package is imported.

    Raises ModelLoadError (a RuntimeError) with the id and the download command; returns where the
    weights are, or None when the job will download them.
    """
    if params.get("preset", "tiny") != "pretrained":
        return None
    from engine.forecasters.hub import hub_reachable, resolve_weights
    from engine.forecasters.registry import adapter_class

    ids = adapter_class(model).weight_ids(params.get("source"), params.get("tokenizer"))
    found = []
    for rid in ids:
        local = Path(str(rid)).expanduser().is_dir()
        if not local and hub_reachable() and str(rid).count("/") == 1 and not str(rid).startswith(("/", ".", "~")):
            continue  # a hub id the job can download; resolving it here would download it now
        found.append(str(resolve_weights(model, rid)))  # offline: cache lookup only
    return ", ".join(found) or None


def preflight(spec: Any, data_dirs: list[Path]) -> list[str]:
    """Everything that can be checked cheaply before queueing (no torch): each symbol's CSV loads,
    the planner accepts the settings, and the plan's context + horizon leave training and validation
    windows; pretrained weights are at hand. Returns one line per symbol with the plan the job will
    use; raises CliError (or the data/model error) naming the symbol, so nothing is queued.

    The same planning call the train task makes (engine.tasks.train.plan_symbol), minus the model.
    """
    import engine.data as data
    from console.cli import CliError
    from engine.data.windows import check_fits, window_count
    from engine.forecasters.hub import ModelLoadError
    from engine.forecasters.planner import PlanError
    from engine.task_params import TrainParams
    from engine.tasks.train import plan_symbol

    p = TrainParams.of(spec.params)
    lines = []
    for sym in spec.symbols:
        series = data.load_symbol(sym, data_dirs)  # DataError: FILE:LINE: reason
        try:
            difficulty, _, plan, spans = plan_symbol(series, spec.model, p)
        except (PlanError, ValueError) as exc:
            raise CliError(f"{sym}: cannot train {spec.model} ({series.n_rows} rows): {exc}") from None
        try:
            check_fits(series.n_rows, plan.horizon, plan.context, val_rows=p.val_rows, test_rows=p.test_rows,
                       spans=("train", "val"), stride=p.stride)
        except data.DataError as exc:
            raise CliError(f"{sym}: {exc.reason}") from None
        n_train = window_count(spans, "train", plan.context, plan.horizon, p.stride)
        n_val = window_count(spans, "val", plan.context, plan.horizon, 1)
        lines.append(f"{sym}: {series.n_rows} rows, {difficulty}; {plan.settings()}; "
                     f"{n_train} train / {n_val} val windows"
                     + (f" ({'; '.join(plan.notes)})" if plan.notes else ""))
    try:
        where = _check_weights(spec.model, spec.params)
    except ModelLoadError as exc:
        raise CliError(str(exc)) from None
    if where:
        lines.append(f"weights: {where}")
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    from console.commands.follow import job_result, submit_and_follow
    from engine import paths
    from engine.jobs import JobSpec, Resources

    workspace = paths.workspace_dir(args.workspace)
    data_dirs = paths.data_dirs(workspace)
    spec = JobSpec.create("train", args.stocks, args.model, params=params_from_args(args, "train"),
                          priority=args.priority, resources=Resources(gpus=args.gpus))
    for line in preflight(spec, data_dirs):  # bad CSV, impossible plan, missing weights: nothing queued
        print(f"plan {line}", flush=True)
    if args.in_process:
        workspace.mkdir(parents=True, exist_ok=True)
        return _in_process(spec, workspace)
    # The same submit/follow path as `forecast-console run train` (own engine or the console's spool;
    # --detach launches the job first; Ctrl-C detaches with the re-attach command).
    rc = submit_and_follow(workspace, spec, args.detach)
    if rc == 0 and not args.detach:
        res = job_result(workspace, spec.id)
        if res:
            _print_runs(res.get("runs") or [])
    return rc
