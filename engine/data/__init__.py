"""Data layer: validated CSV loading, train/val/test spans and leak-free walk-forward windows.

See docs/CONTRACTS.md (engine.data). `engine.data.synth` (the shipped synthetic data generator)
is imported on demand, not here.
"""

from engine.data.loading import (
    COLUMNS,
    DataError,
    Series,
    SymbolInfo,
    find_symbol_csv,
    list_symbols,
    load_csv,
    load_symbol,
)
from engine.data.windows import SPANS, Spans, Windows, default_span_rows, make_windows, split_spans

__all__ = [
    "COLUMNS", "SPANS", "DataError", "Series", "Spans", "SymbolInfo", "Windows", "default_span_rows",
    "find_symbol_csv", "list_symbols", "load_csv", "load_symbol", "make_windows", "split_spans",
]
