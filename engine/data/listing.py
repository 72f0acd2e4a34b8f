"""Which symbols exist: the data folders' `SYMBOL.csv` files, listed without parsing them.

Why a module of its own: the console lists symbols at start-up and must not pay for pandas
(~0.7 s); this module imports only the standard library and engine.paths/engine.symbols, and
`engine.data.loading` (the full, validating parser) re-uses it, so there is one definition of
"what symbols exist".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine import paths
from engine.symbols import SymbolError, validate_symbol

#: Time column header names (normalised by `_norm_name`).
TIME_ALIASES: tuple[str, ...] = ("timestamp", "datetime", "date", "time", "ts")
#: Header names (lower-case, spaces/underscores/dashes removed) mapped to our column names.
_ALIASES: dict[str, str] = {
    "open": "open", "o": "open",
    "high": "high", "h": "high",
    "low": "low", "l": "low",
    "close": "close", "c": "close", "last": "close", "price": "close",
    "adjclose": "adj_close", "adjustedclose": "adj_close",
    "volume": "volume", "vol": "volume", "v": "volume",
}
#: Rows needed for a file to be a series at all (a window needs more; make_windows says how many).
MIN_ROWS = 2


class DataError(ValueError):
    """The one error type for bad data: `str(e) == "FILE:ROW: REASON"` (":ROW" left out if unknown)."""

    def __init__(self, file: str | Path | None, row: int | None, reason: str) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.reason = reason
        super().__init__(self._text())

    def _text(self) -> str:
        where = self.file or "<data>"
        if self.row is not None:
            where = f"{where}:{self.row}"
        return f"{where}: {self.reason}"

    def __str__(self) -> str:
        return self._text()

    def __reduce__(self) -> tuple[type[DataError], tuple[str | None, int | None, str]]:
        # Keeps the error picklable (it crosses process boundaries in the worker / Ray).
        return (DataError, (self.file, self.row, self.reason))


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


#: The folder listing memoised for the duration of one job (`job_listing`), else None.
_memo: dict[tuple[str, ...], dict[str, Path]] | None = None


@contextmanager
def job_listing() -> Iterator[None]:
    """List each data folder once for everything inside (one job, one CLI command).

    Why: a job over many symbols calls `find_symbol_csv` once per symbol, and re-listing and
    re-validating every file name each time made a 480-symbol baseline quadratic. Outside this
    scope every call lists afresh, so a file dropped into a folder is seen at once.
    """
    global _memo
    outer, _memo = _memo, ({} if _memo is None else _memo)
    try:
        yield
    finally:
        _memo = outer


def _symbol_map(data_dirs: Sequence[Path] | None) -> dict[str, Path]:
    dirs = _default_dirs(data_dirs)
    if _memo is not None:
        key = tuple(str(d) for d in dirs)
        if key not in _memo:
            _memo[key] = _list_folders(dirs)
        return _memo[key]
    return _list_folders(dirs)


def _list_folders(dirs: Sequence[Path]) -> dict[str, Path]:
    merged: dict[str, Path] = {}
    for d in dirs:
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


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a folder, not a CSV file") from None
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    if not raw.strip():
        raise DataError(path, None, "empty file")
    if b"\x00" in raw:
        raise DataError(path, None, "binary data, not a text CSV file (NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, line, "not a text CSV file (invalid UTF-8 bytes)") from None
    bad = sum(1 for ch in text[:4096] if not ch.isprintable() and ch not in "\r\n\t")
    if bad > 8:
        raise DataError(path, None, "binary or garbage data, not a text CSV file")
    return text


def _looks_like_data(cell: str) -> bool:
    c = cell.strip().strip('"')
    if not c:
        return False
    try:
        float(c)
        return True
    except ValueError:
        pass
    return c[:1].isdigit() and any(ch in c for ch in "-/:")


def header_columns(path: Path, header: list[str], header_line: int
                   ) -> tuple[dict[str, int], dict[str, str], bool]:
    """Column index and header spelling per our column name, and whether close is the adj close.

    Raises the DataError a bad header deserves (no time or close column, duplicate columns).
    """
    names = [_norm_name(h) for h in header]
    known = set(_ALIASES) | set(TIME_ALIASES)
    if not any(n in known for n in names):
        if any(_looks_like_data(c) for c in header):
            raise DataError(path, header_line, "no header row: the first line looks like data; "
                            "expected a header such as timestamp,open,high,low,close,volume")
        raise DataError(path, header_line, "no recognisable columns in the header; "
                        "expected timestamp,open,high,low,close,volume")
    col: dict[str, int] = {}
    seen: dict[str, str] = {}
    for i, (n, orig) in enumerate(zip(names, header, strict=True)):
        key = "timestamp" if n in TIME_ALIASES else _ALIASES.get(n)
        if key is None:
            continue
        if key == "timestamp" and "timestamp" in col:
            # Keep the most specific time column (timestamp > datetime > date > time).
            prev = _norm_name(header[col["timestamp"]])
            if TIME_ALIASES.index(n) >= TIME_ALIASES.index(prev):
                continue
        elif key in col:
            raise DataError(path, header_line, f"duplicate column {orig.strip()!r} "
                            f"(already have {seen[key]!r})")
        col[key] = i
        seen[key] = orig.strip()
    if "timestamp" not in col:
        raise DataError(path, header_line, "no timestamp column (expected one of: timestamp, date, datetime, time)")
    adjusted = False
    if "close" not in col:
        if "adj_close" not in col:
            raise DataError(path, header_line, "no close column (expected close, or adj close)")
        col["close"] = col["adj_close"]
        adjusted = True
    return col, seen, adjusted

def check_csv(path: Path, symbol: str) -> SymbolInfo:
    """What can be known about a CSV without parsing its values: readable text, a usable header,
    at least MIN_ROWS data rows. The submit-time check of `run` (the worker validates every row)."""
    path = Path(path)
    text = _read_text(path)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header_line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.strip())
    try:
        header = next(csv.reader(io.StringIO(lines[0]), delimiter=_pick_delimiter(lines[0])))
    except csv.Error as exc:
        raise DataError(path, header_line, f"malformed CSV: {exc}") from None
    header_columns(path, header, header_line)
    n = len(lines) - 1
    if n == 0:
        raise DataError(path, header_line, "no data rows (header only)")
    if n < MIN_ROWS:
        raise DataError(path, header_line + 1, f"too few rows: need at least {MIN_ROWS}, have {n}")
    return _quick_info(symbol, path)


def find_symbol_csv(symbol: str, data_dirs: Sequence[Path] | None = None) -> Path:
    """The CSV for `symbol` (later folders win); SymbolError if the name is invalid or unknown."""
    sym = validate_symbol(symbol)
    dirs = _default_dirs(data_dirs)
    found = _symbol_map(dirs).get(sym)
    if found is None:
        where = ", ".join(str(d) for d in dirs) or "(no data folders)"
        raise SymbolError(f"unknown symbol {sym!r}: no {sym}.csv in {where}")
    return found


__all__ = ["DataError", "SymbolInfo", "check_csv", "find_symbol_csv", "job_listing", "list_symbols"]
