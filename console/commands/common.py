"""Argument helpers shared by the headless sub-commands.

Why one module: `baseline`, `train` and the evaluation commands parse the same kinds of values and
pick symbols the same way; written once, their error texts and choices cannot drift apart. Stdlib
only, so `forecast-console --help` stays instant.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse `type=`: an integer >= 1, or a usage error that quotes what was given."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def add_symbol_selection(p: argparse.ArgumentParser, *, stocks_help: str) -> None:
    """The required choice of symbols: `--stocks A B ...`, `--priority` or `--all` (exactly one).

    Resolved by `console.commands.baseline_cmd._resolve_symbols`.
    """
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--stocks", nargs="+", metavar="SYMBOL", help=stocks_help)
    which.add_argument("--priority", action="store_true", help="the 11 priority symbols (those with data)")
    which.add_argument("--all", action="store_true", help="every symbol in the data folders")


def add_date_order(p: argparse.ArgumentParser) -> None:
    """`--dayfirst` / `--monthfirst` (dest `dayfirst`: True, False, or None = decide from the file).

    Only needed for a file whose numeric dates read both ways (the loader's error says so).
    """
    order = p.add_mutually_exclusive_group()
    order.add_argument("--dayfirst", dest="dayfirst", action="store_const", const=True, default=None,
                       help="read numeric dates as day/month/year (only for files that read both ways)")
    order.add_argument("--monthfirst", dest="dayfirst", action="store_const", const=False,
                       help="read numeric dates as month/day/year")
