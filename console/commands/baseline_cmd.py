"""`forecast-console baseline`: naive baselines and difficulty tiers, printed and recorded.

Runs in-process (it is numpy only and takes about a second for all 24 symbols), so it needs no
job queue. Symbols are checked before anything is computed or written: an unknown or path-like
symbol, or a named symbol whose CSV is bad, is a one-line error with exit status 2 and the
workspace is left untouched. Rows that cannot be computed (a bad file met through --all, a horizon
too long for a symbol) are shown but never recorded; exit status 1 when some rows failed, 2 when
none could be computed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from console.commands.common import add_symbol_selection
from console.commands.params_cli import add_param_flags, params_from_args
from console.words import plural


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "baseline",
        help="naive persistence/drift/seasonal baselines and difficulty tiers per symbol",
        description="Score naive persistence, drift and seasonal-naive forecasts on the same walk-forward "
        "windows (test span by default), print persistence MAE% per horizon and the difficulty tier "
        "(persistence MAE% at the tier horizon on the train+validation windows, never test), and record "
        "every row in the workspace store.",
    )
    add_symbol_selection(p, stocks_help="symbols to score")
    add_param_flags(p, "baseline")  # every BaselineParams field (engine.task_params)
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(func=cmd_baseline)


def record_baselines(workspace: Path, rows: list[dict[str, Any]]) -> str:
    """Record the rows (upsert by symbol, model, horizon, span) through the workspace's engine service,
    the only store writer — the same with or without a console open; says where."""
    from console.cli import CliError
    from engine.client import EngineError, EngineRequestError, JobClient

    try:
        JobClient(workspace).store_write("put_baselines", rows)
    except (EngineError, EngineRequestError) as exc:
        raise CliError(f"baselines computed but not recorded: {exc}") from None
    return str(workspace / "store.json")


def _resolve_symbols(args: argparse.Namespace, data_dirs: list[Path], loaded: dict[str, Any] | None = None) -> list[str]:
    """The requested symbols, each with a CSV; any bad name raises before anything is computed.
    Symbols named with --stocks are loaded to check their files; `loaded` (if given) keeps those
    Series by symbol, so a caller does not read the file again."""
    from console.cli import CliError
    from engine.data import find_symbol_csv, list_symbols, load_symbol
    from engine.symbols import PRIORITY_SYMBOLS, validate_symbol

    if args.all:
        syms = [i.symbol for i in list_symbols(data_dirs)]
        if not syms:
            raise CliError(f"no SYMBOL.csv files in {', '.join(str(d) for d in data_dirs)}")
        return syms
    if args.priority:
        available = {i.symbol for i in list_symbols(data_dirs)}
        syms = [s for s in PRIORITY_SYMBOLS if s in available]
        missing = [s for s in PRIORITY_SYMBOLS if s not in available]
        if not syms:
            raise CliError("none of the priority symbols has a CSV in the data folders")
        if missing:
            print(f"note: no data for priority symbol(s) {', '.join(missing)}; skipped", file=sys.stderr)
        return syms
    syms = [validate_symbol(s) for s in args.stocks]  # SymbolError (path-like, odd characters)
    for s in syms:
        find_symbol_csv(s, data_dirs)  # SymbolError naming the folders searched
    for s in dict.fromkeys(syms):
        # A symbol asked for by name whose file is bad is the user's input error: one line, exit 2,
        # nothing recorded (with --all/--priority a bad file is skipped with a note instead).
        series = load_symbol(s, data_dirs)  # DataError "FILE:LINE: reason"
        if loaded is not None:
            loaded[s] = series
    return list(dict.fromkeys(syms))


def _fmt(v: Any, windows: Any = None) -> str:
    """MAE% with the window count it is measured on ("1.31 105w"), as every MAE% on screen says it."""
    if not isinstance(v, int | float):
        return "—"
    return f"{v:.2f} {windows}w" if isinstance(windows, int) else f"{v:.2f}"


def _print_table(rows: list[dict[str, Any]], horizons: list[int], span: str, tier_h: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine.tasks.baseline import summarize

    summary = summarize(rows)
    persistence = [r for r in rows if r["model"] == "naive_persistence" and not r.get("error")]
    windows = {(r["symbol"], r["horizon"]): r.get("n_windows") for r in persistence}
    tiers = {r["symbol"]: (r.get("tier_mae_pct"), r.get("tier_windows")) for r in persistence}
    table = Table(title=f"Naive persistence MAE% ({span} span) and the windows it is measured on",
                  title_justify="left")
    table.add_column("symbol", style="bold")
    table.add_column("rows", justify="right")
    for h in horizons:
        table.add_column(f"h={h} {span}", justify="right")
    table.add_column(f"tier (h={tier_h}, pre-test MAE%)")
    notes: list[str] = []
    for sym, s in summary.items():
        cells = [sym, str(s["n_rows"] if s["n_rows"] is not None else "—")]
        for h in horizons:
            cells.append(_fmt(s["mae_pct"].get(str(h)), windows.get((sym, h))))
            if str(h) in s["errors"]:
                notes.append(f"{sym} h={h}: {s['errors'][str(h)]}")
        tier_mae, tier_windows = tiers.get(sym, (None, None))
        cells.append(s["tier"] if tier_mae is None else f"{s['tier']} ({_fmt(tier_mae, tier_windows)})")
        table.add_row(*cells)
    con = Console(soft_wrap=True)
    con.print(table)
    for n in notes:
        con.print(f"[yellow]—[/] {n}", highlight=False, markup=True)


def cmd_baseline(args: argparse.Namespace) -> int:
    from engine.data import job_listing

    with job_listing():  # the data folders are listed once, not once per symbol
        return _baseline(args)


def _baseline(args: argparse.Namespace) -> int:
    from engine import paths
    from engine.task_params import BaselineParams
    from engine.tasks.baseline import compute_baselines

    bp = BaselineParams.of(params_from_args(args, "baseline"))
    workspace = paths.workspace_dir(args.workspace)
    data_dirs = paths.data_dirs(workspace)
    symbols = _resolve_symbols(args, data_dirs)
    horizons = sorted({bp.horizon} if isinstance(bp.horizon, int) else set(bp.horizon))
    tier_h = bp.tier_horizon
    rows = compute_baselines(
        symbols, horizons, data_dirs, span=bp.span, context_len=bp.context, stride=bp.stride, tier_horizon=tier_h,
        tier_span=bp.tier_span, methods=tuple(bp.methods), val_rows=bp.val_rows, test_rows=bp.test_rows,
    )
    good = [r for r in rows if not r.get("error")]
    if not good:
        # Nothing could be scored (impossible horizon, only bad files): an error, and the store is
        # left as it was rather than filled with rows that carry no numbers.
        from console.cli import CliError

        first = next((r for r in rows if r.get("error")), None)
        why = f"{first['symbol']} h={first['horizon']}: {first['error']}" if first else "no rows"
        raise CliError(f"no baseline could be computed ({why}); nothing recorded")
    # Error rows are reported, never recorded: a bad file or an impossible horizon must not
    # overwrite numbers an earlier run stored under the same (symbol, model, horizon, span).
    where = record_baselines(workspace, good)
    failed = len(rows) - len(good)
    if args.json:
        from engine.tasks.baseline import summarize

        print(json.dumps({"span": bp.span, "horizons": horizons, "tier_horizon": tier_h, "recorded": where,
                          "recorded_rows": len(good), "summary": summarize(rows), "rows": rows}, indent=1))
    else:
        _print_table(rows, horizons, bp.span, tier_h)
        print(f"{plural(len(good), 'row')} recorded in {where}")
    if failed:
        print(f"forecast-console: {failed} of {len(rows)} rows could not be computed (see above); "
              "they were not recorded", file=sys.stderr)
        return 1
    return 0
