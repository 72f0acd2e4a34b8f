"""`forecast-console runs | best | promote | rollback | report`: the store, headless.

Reading commands (runs, best, report) open the store read-only; promote/rollback are requests to
the workspace's engine service (engine.client.JobClient.store_write), the only store writer, so
they work the same with or without a console open.
Heavy imports happen inside the handlers so `forecast-console --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from console.commands.common import positive_int
from engine.models import MODELS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("runs", help="list tracked runs",
                              description="List tracked runs, oldest first, with their key metrics.")
    p.add_argument("--model", help="only this model")
    p.add_argument("--symbol", help="only this symbol")
    p.add_argument("--metric", default="val_mae_pct", help="metric column to show (default val_mae_pct)")
    p.add_argument("--limit", type=int, default=None, help="show only the newest N runs")
    p.add_argument("--json", action="store_true", help="print the full records as JSON")
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser(
        "best", help="the best run on a validation metric",
        description="The best run for a model (and symbol) on a metric — chosen on validation "
        "(val_mae_pct by default); its test metric is shown for reporting.")
    p.add_argument("--model", required=True, help=f"model name ({', '.join(MODELS)})")
    p.add_argument("--symbol", help="only this symbol (default: best over all symbols)")
    p.add_argument("--horizon", type=positive_int, help="only runs at this horizon (runs at different horizons "
                   "are not comparable)")
    p.add_argument("--metric", default="val_mae_pct", help="selection metric (default val_mae_pct)")
    p.add_argument("--maximize", action="store_true", help="higher is better for --metric")
    p.add_argument("--require-checkpoint", action="store_true", help="only runs whose checkpoint exists")
    p.add_argument("--export-path", action="store_true",
                   help="print only the checkpoint path of the best run that has one (for scripts)")
    p.add_argument("--json", action="store_true", help="print the run record as JSON")
    p.set_defaults(func=cmd_best)

    p = subparsers.add_parser(
        "promote", help="write hyperparams/<model>/<SYMBOL>.json from the current pick or a run",
        description="Promote the current pick (default) or a specific run to the config file trading "
        "code reads (docs/HYPERPARAMS_SCHEMA.md). Atomic; audited; undo with `rollback`.")
    p.add_argument("--model", required=True, help=f"model name ({', '.join(MODELS)})")
    p.add_argument("--symbol", required=True, help="symbol whose config is written")
    p.add_argument("--horizon", type=positive_int, default=None,
                   help="the decision's horizon (needed when the model has picks at several horizons)")
    p.add_argument("--preset", default=None, help="the decision's preset (tiny, pretrained; default: any)")
    p.add_argument("--from", dest="source", choices=("pick", "comparison"), default="pick",
                   help="promote the current pick (default) or the comparison row at --horizon "
                        "(exactly what Compare shows: its config, adapter and windows)")
    p.add_argument("--run", metavar="RUN_ID", default=None, help="promote this run instead of the current pick")
    p.add_argument("--by", default=None, help="who promotes (default user@host)")
    p.set_defaults(func=cmd_promote)

    p = subparsers.add_parser("rollback", help="restore the config a promotion replaced",
                              description="Undo the latest promotion for a model and symbol: restore "
                              "the config it replaced, or remove the file if it replaced none.")
    p.add_argument("--model", required=True, help="model name")
    p.add_argument("--symbol", required=True, help="symbol")
    p.set_defaults(func=cmd_rollback)

    p = subparsers.add_parser("report", help="markdown summary of runs, picks and promotions",
                              description="Write a markdown report (best run per model and symbol chosen "
                              "on validation and reported on test, picks, promotions).")
    p.add_argument("--out", metavar="FILE", default=None, help="write to FILE instead of stdout")
    p.add_argument("--metric", default="val_mae_pct", help="selection metric (default val_mae_pct)")
    p.add_argument("--test-metric", default="test_mae_pct", help="reported metric (default test_mae_pct)")
    p.set_defaults(func=cmd_report)


def _open(args: argparse.Namespace, *, write: bool) -> Any:
    from engine import paths
    from store import Store

    return Store.open(paths.workspace_dir(args.workspace), readonly=not write,
                      hyperparams_dir=paths.hyperparams_dir(getattr(args, "hyperparams", None)))


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) else "—"


def _with_windows(v: Any, label: str) -> str:
    """`3.364 248w` (the count from a `val 248w` label); a bare dash when there is no number."""
    if not isinstance(v, int | float):
        return "—"
    return f"{v:.4g} {label.split(' ', 1)[1]}" if " " in label else f"{v:.4g}"


def _windows_of(run: Any, metric: str) -> str:
    """The window label (`val 248w`) of the span `metric` is computed on, from a ListedRun; "" for a
    metric of neither span."""
    from store.tracker import metric_span

    return {"val": run.val_windows, "test": run.test_windows}.get(metric_span(metric) or "", "")


def _shown_metrics(metric: str) -> list[str]:
    """The metric asked for, then the same metric on the other span (validation beside test)."""
    from store.tracker import other_span_metric

    other = other_span_metric(metric)
    return [metric] if other is None else [metric, other]


def cmd_runs(args: argparse.Namespace) -> int:
    with _open(args, write=False) as st:
        runs = st.runs(model=args.model, symbol=args.symbol)
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be a positive integer, got {args.limit}")
        runs = runs[-args.limit:]
    if args.json:
        print(json.dumps(runs, indent=1))
        return 0
    if not runs:
        print("no runs recorded yet")
        return 0
    from store.run_listing import listed_run

    metrics = _shown_metrics(args.metric)
    cols = ["run_id", "model", "symbol", "h", *metrics, "seed", "created"]
    rows = []
    for r in runs:  # every number with its horizon and window count (runs on other windows do not compare)
        lr = listed_run(r, None)
        rows.append([r["run_id"], r["model"], r["symbol"], "—" if lr.horizon is None else str(lr.horizon),
                     *(_with_windows(r["metrics"].get(m), _windows_of(lr, m)) for m in metrics),
                     str(r.get("seed") if r.get("seed") is not None else "—"), r["created"]])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(f"{len(runs)} run(s)")
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from store import StoreError

    need_ckpt = args.require_checkpoint or args.export_path
    with _open(args, write=False) as st:
        run = st.best(args.metric, model=args.model, symbol=args.symbol, minimize=not args.maximize,
                      require_checkpoint=need_ckpt, horizon=args.horizon)
        where = (f"{args.model}" + (f"/{args.symbol}" if args.symbol else "")
                 + (f" at h={args.horizon}" if args.horizon else ""))
        if run is None:
            extra = " with an existing checkpoint" if need_ckpt else ""
            raise StoreError(f"no run for {where} has metric {args.metric!r}{extra}")
        ckpt = run.get("checkpoint")
        if ckpt and not Path(ckpt).is_absolute():
            ckpt = str(st.workspace.root / ckpt)
    if args.export_path:
        print(ckpt)
        return 0
    if args.json:
        print(json.dumps(run, indent=1))
        return 0
    from store.run_listing import listed_run

    lr = listed_run(run, None)
    print(f"best {where} on {args.metric} ({'max' if args.maximize else 'min'}): {run['run_id']} "
          f"({run['symbol']}, h={'?' if lr.horizon is None else lr.horizon})")
    print("  " + "   ".join(f"{m} = {_with_windows(run['metrics'].get(m), _windows_of(lr, m))}"
                            for m in _shown_metrics(args.metric)))
    print(f"  hyperparams: {json.dumps(run['hyperparams'], sort_keys=True)}")
    print(f"  checkpoint: {ckpt or '—'}")
    return 0


def _check_names(args: argparse.Namespace) -> None:
    """Refuse a bad model/symbol before opening (a writer open would create the workspace)."""
    from engine.models import validate_model
    from engine.symbols import validate_symbol

    validate_model(args.model)
    validate_symbol(args.symbol)


def _engine(args: argparse.Namespace) -> Any:
    """The workspace's engine service, the only store writer (started on demand; exits when idle)."""
    from engine import paths
    from engine.client import JobClient

    return JobClient(paths.workspace_dir(args.workspace),
                     hyperparams_dir=paths.hyperparams_dir(getattr(args, "hyperparams", None)))


def cmd_promote(args: argparse.Namespace) -> int:
    _check_names(args)
    if args.run and args.source != "pick":
        raise ValueError("--run and --from comparison are alternatives; give one")
    source = args.run or args.source
    path = Path(_engine(args).store_write("promote", args.model, args.symbol, source=source, by=args.by,
                                          horizon=args.horizon, preset=args.preset))
    doc = json.loads(path.read_text(encoding="utf-8"))
    what = f"run {args.run}" if args.run else f"the current {'pick' if source == 'pick' else 'comparison row'}"
    val, test = doc.get("validation") or {}, doc.get("test") or {}
    print(f"promoted {doc['model']}/{doc['symbol']} h={doc.get('horizon')} ({doc.get('preset')}) from {what} -> {path}")
    print(f"  val MAE% {_num(val.get('mae_pct'))}  test MAE% {_num(test.get('mae_pct'))}"
          + (f"  adapter {doc['adapter']['dir']}" if doc.get("adapter") else ""))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _check_names(args)
    path = _engine(args).store_write("rollback", args.model, args.symbol)
    if path is None:
        print(f"rolled back {args.model}/{args.symbol.upper()}: no earlier config, the file was removed")
    else:
        print(f"rolled back {args.model}/{args.symbol.upper()} -> {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from store.storage import atomic_write_bytes

    with _open(args, write=False) as st:
        text = st.report(metric=args.metric, test_metric=args.test_metric)
    if args.out:
        out = Path(args.out).expanduser()
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out, text.encode("utf-8"))
        except OSError as exc:  # the raw error names our temp file, not the one the user gave
            raise ValueError(f"cannot write --out {out}: {exc.strerror or exc}") from None
        print(f"report written to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
