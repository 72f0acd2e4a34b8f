"""`forecast-console train`: fine-tune a foundation model per symbol, headless, with live progress.

The job goes through the engine (a detached worker subprocess, events file, store record), so a
headless run and a console run are the same thing and the run lands in the store. `--in-process`
runs the task in this process instead (no store record; useful for debugging). Heavy modules are
imported inside the handler so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "train", help="fine-tune toto, kronos or chronos2 per symbol (LoRA; full for --preset tiny)",
        description="Fine-tune a model on each symbol's train span, early-stop on its validation span, and "
        "record the run (adapter, metrics, loss curve) in the workspace. Unset settings come from the "
        "per-stock plan (rows and difficulty → context, horizon, loss, LoRA rank, lr, epochs); the tiny preset "
        "trains all weights (finetune full) with its native loss at 10x the lr, context at most 128.")
    p.add_argument("--stocks", nargs="+", required=True, metavar="SYMBOL", help="symbols to train on, in turn")
    p.add_argument("--model", required=True, choices=("toto", "kronos", "chronos2"))
    p.add_argument("--preset", choices=("tiny", "pretrained"), default="tiny",
                   help="tiny = real architecture with random weights (CPU, seconds); pretrained = hub weights")
    p.add_argument("--source", default=None, help="pretrained hub id or local weights directory")
    p.add_argument("--epochs", type=_positive_int, default=None)
    p.add_argument("--context", type=_positive_int, default=None)
    p.add_argument("--horizon", type=_positive_int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lora-rank", type=_positive_int, default=None)
    p.add_argument("--loss", choices=("native", "huber", "heteroscedastic", "quantile", "mse"), default=None)
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps-per-epoch", type=_positive_int, default=None)
    p.add_argument("--finetune", choices=("lora", "full"), default=None,
                   help="default: lora for pretrained, full for tiny (LoRA on random weights learns little)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the same configuration")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs the job needs (0 = CPU slot)")
    p.add_argument("--in-process", action="store_true", help="run here instead of as an engine job (no store record)")
    p.add_argument("--detach", action="store_true", help="submit and return without following progress")
    p.set_defaults(func=cmd_train)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("preset", "source", "epochs", "context", "horizon", "lr", "lora_rank", "loss", "batch_size", "seed",
            "max_steps_per_epoch", "finetune")
    p = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.resume:
        p["resume"] = True
    return p


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
    from engine.tasks import train as task
    from engine.tasks.context import TaskContext

    job_dir = workspace / "jobs" / spec.id
    job_dir.mkdir(parents=True, exist_ok=True)
    spec.write(job_dir)
    ev = EventWriter(job_dir / "events.jsonl", spec.id)
    ctx = TaskContext(job_id=spec.id, workspace=workspace, job_dir=job_dir, events=ev,
                      data_dirs=paths.data_dirs(workspace))
    stop = threading.Event()

    def follow() -> None:
        off = 0
        while not stop.wait(0.5):
            chunk = read_events(job_dir / "events.jsonl", off)
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


def _via_engine(spec: Any, workspace: Path, detach: bool) -> int:
    import asyncio

    from console.cli import CliError
    from engine.controller import Engine
    from store import Store

    async def main() -> int:
        store = Store.open(workspace)
        eng = Engine(workspace, store=store)
        await eng.start()
        try:
            q = eng.subscribe()
            st = eng.submit(spec)
            print(f"submitted {st.id}")
            if detach:
                return 0
            last = 0.0
            while True:
                try:
                    upd = await asyncio.wait_for(q.get(), timeout=1.0)
                except TimeoutError:
                    upd = None
                js = eng.job(spec.id)
                if upd is not None and upd.job_id == spec.id:
                    if upd.kind == "log":
                        print(f"  {upd.data.get('msg', upd.data)}", flush=True)
                    elif upd.kind == "loss" and time.monotonic() - last > 1.0:
                        last = time.monotonic()
                        d = upd.data
                        print(f"  epoch {d.get('epoch')} step {d.get('step')} train {d.get('train')}"
                              f"{'' if d.get('val') is None else ' val ' + str(d.get('val'))}"
                              f"  ({js.progress_done if js else '?'}/{js.progress_total if js else '?'}, "
                              f"eta {_fmt_eta(js.eta_s if js else None)})", flush=True)
                if js is not None and js.state in ("succeeded", "failed", "cancelled", "interrupted"):
                    print(f"job {js.id}: {js.state}" + (f" ({js.reason})" if js.reason else ""))
                    break
        finally:
            await eng.stop()
        runs = [r for r in store.runs() if r.get("job_id") == spec.id]
        _print_runs(runs)
        store.close()
        if js.state != "succeeded":
            raise CliError(f"training job {js.id} {js.state}: {js.reason or 'see its log'}")
        return 0

    return asyncio.run(main())


def cmd_train(args: argparse.Namespace) -> int:
    from engine import paths
    from engine.data import find_symbol_csv
    from engine.jobs import JobSpec, Resources
    from engine.symbols import validate_symbol

    workspace = paths.workspace_dir(args.workspace)
    data_dirs = paths.data_dirs(workspace)
    syms = [validate_symbol(s) for s in args.stocks]
    for s in syms:
        find_symbol_csv(s, data_dirs)  # unknown symbol → one-line error, nothing queued
    spec = JobSpec.create("train", syms, args.model, params=_params(args), priority=args.priority,
                          resources=Resources(gpus=args.gpus))
    from engine.tasks.train import check_params

    check_params(spec.params)
    workspace.mkdir(parents=True, exist_ok=True)
    if args.in_process:
        return _in_process(spec, workspace)
    try:
        return _via_engine(spec, workspace, args.detach)
    except ImportError as exc:  # engine/store not importable in a half-built tree
        print(f"note: engine unavailable ({exc}); running in-process", file=sys.stderr)
        return _in_process(spec, workspace)
