"""`forecast-console data synth|check`: make the shipped synthetic data, validate CSV files.

`data synth` regenerates `trainingdata/SYMBOL.csv` byte-for-byte from a seed. It never silently
replaces data that differs from what it would write (another seed, or a user's own file): it
says which files and needs `--force`, and checks all of them before writing any.
`data check` loads each file with the full validation and prints rows and date range, or the
`FILE:LINE: reason` of the first problem; any failure exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from console.commands.common import add_date_order


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="make or validate the per-symbol CSV data",
                                 description="Make the shipped synthetic data or validate CSV files.")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="write the synthetic SYMBOL.csv files (deterministic per seed)",
                           description="Write the synthetic SYMBOL.csv files, byte-identical for a seed. "
                           "Files that differ from what would be written are never replaced without --force.")
    synth.add_argument("--seed", type=int, default=None, help="random seed (default: the shipped data's seed)")
    synth.add_argument("--out", default=None, help="output folder (default: the shipped trainingdata folder)")
    synth.add_argument("--symbols", nargs="+", metavar="SYMBOL", default=None,
                       help="only these symbols (default: all 24)")
    synth.add_argument("--force", action="store_true",
                       help="overwrite existing files whose content differs (other seed or your own data)")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="validate CSV files: rows and date range, or the first problem",
                           description="Load each file with the full validation and print its rows and "
                           "date range, or FILE:LINE: reason for its first problem. Exit status 2 if any "
                           "fails. (Whether a file is long enough depends on context and horizon: "
                           "`baseline`/`train` say.)")
    check.add_argument("items", nargs="*", metavar="SYMBOL|PATH",
                       help="symbols (looked up in the data folders) or CSV paths; default: every symbol")
    add_date_order(check)
    check.set_defaults(func=_check)


def _synth(args: argparse.Namespace) -> int:
    from console.cli import CliError
    from engine import paths
    from engine.data import synth
    from engine.symbols import validate_symbol

    seed = synth.DEFAULT_SEED if args.seed is None else args.seed
    if seed < 0:
        raise CliError(f"--seed must be >= 0, got {seed}")
    out = Path(args.out).expanduser().resolve() if args.out else paths.shipped_data_dir()
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    symbols = [validate_symbol(s) for s in (args.symbols or synth.PROFILES)]
    unknown = [s for s in symbols if s not in synth.PROFILES]
    if unknown:
        raise CliError(f"no synthetic profile for {', '.join(unknown)}; known: {', '.join(synth.PROFILES)}")

    texts = {s: synth.to_csv_text(synth.generate(s, seed)).encode() for s in symbols}
    changed = [s for s in symbols if (out / f"{s}.csv").is_file() and (out / f"{s}.csv").read_bytes() != texts[s]]
    if changed and not args.force:
        raise CliError(f"{len(changed)} file(s) in {out} differ from seed {seed}'s data ({', '.join(changed)}); "
                       "nothing written. Pass --force to overwrite them, or --out another folder")
    out.mkdir(parents=True, exist_ok=True)
    for s in symbols:
        path = out / f"{s}.csv"
        state = "unchanged"
        if not path.is_file() or path.read_bytes() != texts[s]:
            tmp = out / f".{s}.csv.tmp"
            tmp.write_bytes(texts[s])
            tmp.replace(path)
            state = "replaced" if s in changed else "written"
        p = synth.PROFILES[s]
        print(f"{state:9s} {path}  {p.rows} rows  {p.structure}  {p.tier}")
    print(f"{len(symbols)} symbols, seed {seed}, folder {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from engine import paths
    from engine.data import DataError, list_symbols, load_csv, load_symbol
    from engine.symbols import SymbolError

    dirs = paths.data_dirs(paths.workspace_dir())
    items: list[str] = list(args.items) or [i.symbol for i in list_symbols(dirs)]
    if not items:
        print(f"no SYMBOL.csv files in {', '.join(str(d) for d in dirs)}", file=sys.stderr)
        return 2
    failed = 0
    for item in items:
        try:
            p = Path(item).expanduser()
            if item.lower().endswith(".csv") or "/" in item or "\\" in item or p.is_file():
                series = load_csv(p, dayfirst=args.dayfirst)
            else:
                series = load_symbol(item, dirs, dayfirst=args.dayfirst)
        except (DataError, SymbolError) as exc:
            failed += 1
            print(f"forecast-console: error: {exc}", file=sys.stderr)
            continue
        kind = "ohlcv" if series.has_ohlc else "close-only"
        print(f"ok  {series.symbol:8s} {series.n_rows:6d} rows  {series.start} .. {series.end}  {kind}  {series.path}")
        if series.dropped_lines:
            shown = ", ".join(map(str, series.dropped_lines[:8])) + (" …" if len(series.dropped_lines) > 8 else "")
            print(f"    left out {len(series.dropped_lines)} dated row(s) without any price (line {shown})")
    if failed:
        print(f"{failed} of {len(items)} failed", file=sys.stderr)
        return 2
    return 0
