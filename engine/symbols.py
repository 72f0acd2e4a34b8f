"""Symbol names and the named symbol sets (the shipped 24 and their groups).

A symbol becomes a file name (`trainingdata/SYMBOL.csv`, `hyperparams/<model>/SYMBOL.json`), so
anything that could walk out of a folder is refused here, once, for every caller.
"""

from __future__ import annotations

import re

ALL_SYMBOLS: tuple[str, ...] = (
    "AAPL", "ADBE", "ADSK", "AMD", "AMZN", "BTCUSD", "COIN", "COUR", "CRWD", "ETHUSD", "GOOG", "GOOGL",
    "INTC", "LCID", "META", "MSFT", "NET", "NVDA", "QQQ", "QUBT", "SPY", "TSLA", "U", "UNIUSD",
)
PRIORITY_SYMBOLS: tuple[str, ...] = (
    "SPY", "QQQ", "MSFT", "AAPL", "GOOG", "NVDA", "AMD", "META", "TSLA", "BTCUSD", "ETHUSD",
)
CRYPTO_SYMBOLS: frozenset[str] = frozenset({"BTCUSD", "ETHUSD", "UNIUSD"})

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,31}$")


class SymbolError(ValueError):
    """A symbol name that is not allowed (path-like, empty, odd characters) or not known."""


def validate_symbol(symbol: str) -> str:
    """Return the canonical (upper-case) symbol or raise SymbolError saying why."""
    if not isinstance(symbol, str) or not symbol.strip():
        raise SymbolError("symbol is empty")
    s = symbol.strip().upper()
    if "/" in s or "\\" in s or ".." in s or s.startswith("."):
        raise SymbolError(f"symbol {symbol!r} looks like a path; use letters, digits, '.', '_' or '-'")
    if not _SYMBOL_RE.match(s):
        raise SymbolError(
            f"symbol {symbol!r} is not valid: 1-32 characters from A-Z 0-9 . _ - , starting with a letter or digit"
        )
    return s
