"""Data layer: validated CSV loading, train/val/test spans and leak-free walk-forward windows.

See docs/CONTRACTS.md (engine.data). Why lazy (PEP 562): listing symbols is pandas-free
(`engine.data.listing`) and the console imports it at start-up; the loading and window modules
import pandas/numpy (~0.7 s) and are imported only when one of their names is first used.
`engine.data.synth` (the shipped synthetic data generator) is imported on demand, not here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from engine.data.listing import DataError, SymbolInfo, check_csv, find_symbol_csv, job_listing, list_symbols

if TYPE_CHECKING:
    from engine.data.loading import COLUMNS, Series, load_csv, load_symbol
    from engine.data.windows import SPANS, Spans, Windows, default_span_rows, make_windows, split_spans

#: Lazily exported name -> the submodule that defines it.
_LAZY: dict[str, str] = {
    "COLUMNS": "engine.data.loading", "Series": "engine.data.loading",
    "load_csv": "engine.data.loading", "load_symbol": "engine.data.loading",
    "SPANS": "engine.data.windows", "Spans": "engine.data.windows", "Windows": "engine.data.windows",
    "default_span_rows": "engine.data.windows", "make_windows": "engine.data.windows",
    "split_spans": "engine.data.windows",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'engine.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "COLUMNS", "SPANS", "DataError", "Series", "Spans", "SymbolInfo", "Windows", "check_csv", "default_span_rows",
    "find_symbol_csv", "job_listing", "list_symbols", "load_csv", "load_symbol", "make_windows", "split_spans",
]
