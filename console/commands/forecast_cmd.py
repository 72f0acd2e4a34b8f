"""`forecast-console forecast`: the next H rows from the promoted decision, for trading code.

It reads only the promoted folder (hyperparams/) and the symbol's CSV (engine.serve), so it works
without a workspace — the point of a self-contained hand-off. Heavy imports stay in the handler.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from console.commands.common import add_symbol_selection, positive_int
from engine.models import MODELS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "forecast", help="forecast the next H rows with the promoted model",
        description="Load the promoted model, adapter and inference settings (hyperparams/<model>/<SYMBOL>.json) "
        "and forecast the H rows after the last row of each symbol's CSV: point forecast and 10/50/90 % "
        "quantiles, timestamped on the symbol's calendar. Without --model: the promoted winner across models "
        "at --horizon (or at the only horizon the symbol is promoted at).")
    add_symbol_selection(p, stocks_help="symbols to forecast (with --priority/--all: those with a promotion)")
    p.add_argument("--model", default=None, help=f"use this model's promotion ({', '.join(MODELS)})")
    p.add_argument("--horizon", type=positive_int, default=None,
                   help="the horizon of the decision to use (must match what was promoted)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON (one object per symbol, in a list)")
    fmt.add_argument("--csv", action="store_true", help="print CSV rows: symbol,model,horizon,timestamp,point,q10,q50,q90")
    p.set_defaults(func=cmd_forecast, exit_without_teardown=True)  # see console.cli._exit_now


def _result(symbol: str, args: argparse.Namespace, data_dirs: list[Any], series: Any) -> dict[str, Any]:
    """One symbol's forecast; `series`: its loaded data, or None to load it here (once a decision is found)."""
    from engine import paths
    from engine.data import find_symbol_csv, load_csv
    from engine.serve import promoted_for

    m = promoted_for(symbol, args.model, args.horizon, paths.hyperparams_dir(args.hyperparams), device=args.device)
    csv = find_symbol_csv(symbol, data_dirs)
    frame = m.forecast(series if series is not None else load_csv(csv, symbol))
    return {
        "symbol": m.symbol, "model": m.model, "horizon": m.horizon, "preset": m.doc.get("preset"),
        "promoted_at": m.doc.get("promoted_at"), "config": str(m.path), "data": str(csv),
        "rows": [{"timestamp": t.strftime("%Y-%m-%d") if t.hour == t.minute == 0 else t.isoformat(),
                  "point": float(r.point), "q10": float(r.q10), "q50": float(r.q50), "q90": float(r.q90)}
                 for t, r in zip(frame["timestamp"], frame.itertuples(), strict=True)],
    }


def cmd_forecast(args: argparse.Namespace) -> int:
    from console.cli import CliError
    from console.commands.baseline_cmd import _resolve_symbols
    from engine import paths
    from engine.forecasters.hub import ModelLoadError

    data_dirs = paths.data_dirs(paths.workspace_dir(args.workspace))
    loaded: dict[str, Any] = {}
    symbols = _resolve_symbols(args, data_dirs, loaded)  # a bad name or file fails before any model loads
    results = []
    try:
        for s in symbols:
            try:
                results.append(_result(s, args, data_dirs, loaded.pop(s, None)))
            except FileNotFoundError as exc:  # nothing promoted: an error for a symbol asked for by name
                if args.stocks:
                    raise
                print(f"note: {exc}; skipped", file=sys.stderr)
    except ModelLoadError as exc:  # the same message training gives (the id and `hf download ...`)
        raise CliError(str(exc)) from None
    if not results:
        raise CliError("none of the symbols has a promoted decision; promote one first "
                       "(`forecast-console promote --model M --symbol SYMBOL --horizon H`)")
    if args.json:
        print(json.dumps(results, indent=1))
    elif args.csv:
        w = sys.stdout
        w.write("symbol,model,horizon,timestamp,point,q10,q50,q90\n")
        for r in results:
            for row in r["rows"]:
                w.write(f"{r['symbol']},{r['model']},{r['horizon']},{row['timestamp']},{row['point']!r},"
                        f"{row['q10']!r},{row['q50']!r},{row['q90']!r}\n")
    else:
        for r in results:
            print(f"{r['symbol']}: {r['model']} ({r['preset']}) h={r['horizon']}, promoted {r['promoted_at']} "
                  f"— after the last row of {r['data']}")
            print(f"  {'timestamp':<12} {'point':>12} {'q10':>12} {'q50':>12} {'q90':>12}")
            for row in r["rows"]:
                print(f"  {row['timestamp']:<12} {row['point']:>12.4f} {row['q10']:>12.4f} {row['q50']:>12.4f} "
                      f"{row['q90']:>12.4f}")
    return 0
