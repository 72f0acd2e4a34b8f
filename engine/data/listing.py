"""Which symbols exist: the data folders' `SYMBOL.csv` files, listed without parsing them.

Why a module of its own: the console lists symbols at start-up and must not pay for pandas
(~0.7 s); this module imports only the standard library and engine.paths/engine.symbols, and
`engine.data.loading` (the full, validating parser) re-uses it, so there is one definition of
"what symbols exist".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.symbols import SymbolError, validate_symbol

#: Time column header names (normalised by `_norm_name`).
TIME_ALIASES: tuple[str, ...] = ("timestamp", "datetime", "date", "time", "ts")


@dataclass(frozen=True)
class SymbolInfo:
    """A cheap listing entry: row count and first/last timestamp as written, no full validation."""

    symbol: str
    path: Path
    rows: int
    start: str
    end: str


def _pick_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _norm_name(name: str) -> str:
    return "".join(ch for ch in name.strip().strip('"').lower() if ch not in " _-.<>")


def _default_dirs(data_dirs: Sequence[Path] | None) -> list[Path]:
    if data_dirs is not None:
        return [Path(d) for d in data_dirs]
    return paths.data_dirs(paths.workspace_dir())


def _csv_files(directory: Path) -> dict[str, Path]:
    """Valid-symbol CSV files in one folder, keyed by canonical symbol (file names are case-folded)."""
    out: dict[str, Path] = {}
    if not directory.is_dir():
        return out
    for p in sorted(directory.iterdir()):
        if p.suffix.lower() != ".csv" or not p.is_file():
            continue
        try:
            sym = validate_symbol(p.stem)
        except SymbolError:
            continue  # a file name that cannot be a symbol is not offered as one
        out.setdefault(sym, p)
    return out


def _symbol_map(data_dirs: Sequence[Path] | None) -> dict[str, Path]:
    merged: dict[str, Path] = {}
    for d in _default_dirs(data_dirs):
        merged.update(_csv_files(Path(d)))  # later folders override earlier ones
    return merged


def _quick_info(symbol: str, path: Path) -> SymbolInfo:
    """Row count from counting lines, start/end from the first and last data lines' time field."""
    try:
        raw = path.read_bytes()
    except OSError:
        return SymbolInfo(symbol, path, 0, "", "")
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if len(lines) < 2 or b"\x00" in raw[:4096]:
        return SymbolInfo(symbol, path, max(0, len(lines) - 1), "", "")
    try:
        header = lines[0].decode("utf-8-sig")
        first, last = lines[1].decode("utf-8"), lines[-1].decode("utf-8")
    except UnicodeDecodeError:
        return SymbolInfo(symbol, path, len(lines) - 1, "", "")
    delim = _pick_delimiter(header)
    names = [_norm_name(h) for h in header.split(delim)]
    col = next((names.index(a) for a in TIME_ALIASES if a in names), 0)

    def field(line: str) -> str:
        parts = line.split(delim)
        return parts[col].strip().strip('"') if col < len(parts) else ""

    start, end = field(first), field(last)
    if start > end and len(start) == len(end) and start[:1].isdigit() and "-" in start:
        start, end = end, start  # newest-first ISO export
    return SymbolInfo(symbol, path, len(lines) - 1, start, end)


def list_symbols(data_dirs: Sequence[Path] | None = None) -> list[SymbolInfo]:
    """Every `SYMBOL.csv` in the data folders (later folders override earlier), sorted by symbol.

    Cheap on purpose (the console lists it at start-up): counts lines and reads the first/last
    time fields; a broken file still appears and fails properly when loaded or checked.
    """
    return [_quick_info(sym, p) for sym, p in sorted(_symbol_map(data_dirs).items())]


def find_symbol_csv(symbol: str, data_dirs: Sequence[Path] | None = None) -> Path:
    """The CSV for `symbol` (later folders win); SymbolError if the name is invalid or unknown."""
    sym = validate_symbol(symbol)
    dirs = _default_dirs(data_dirs)
    found = _symbol_map(dirs).get(sym)
    if found is None:
        where = ", ".join(str(d) for d in dirs) or "(no data folders)"
        raise SymbolError(f"unknown symbol {sym!r}: no {sym}.csv in {where}")
    return found


__all__ = ["SymbolInfo", "find_symbol_csv", "list_symbols"]
