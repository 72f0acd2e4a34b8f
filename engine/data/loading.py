"""CSV loading and validation: one symbol's daily bars, or one specific reason why not.

Every problem with a data file becomes a `DataError` naming the file, the 1-based line of the CSV
(the header is line 1) and the reason, because the person fixing it opens the file in an editor.
Nothing here writes anything; a bad file changes nothing. The standard `csv` module splits the
file (it knows the file line of every row, which pandas' reader does not report); pandas reads the
cells (`engine.data.parsing`: dates, numbers, decimal commas, thousands separators).

Accepted exports: a header row; a time column called timestamp/date/datetime/time (ISO dates,
day-first or month-first numeric dates, unix epoch seconds/ms, zone-stamped times kept at the
exchange's wall clock); price columns open/high/low/close and volume in any case. `close` wins over
`adj close`; `adj close` is used when there is no close (or the close column is empty). A file whose
open/high/low columns are missing *or empty on every row* is a close-only export (`has_ohlc=False`).
Volume is optional per file and per row: empty cells are NaN, never an error, and volume is never
read as a price. A dated row with no price in any column (`null` everywhere: a holiday in a Yahoo
export) is dropped and listed in `Series.dropped_lines`; a row missing only some prices is refused.
Comma, semicolon and tab separators are recognised from the header. Rows must be in time order; a
file sorted newest-first throughout (as some brokers export) is reversed, anything else out of order
is refused.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data.listing import (  # noqa: F401 - re-exported: engine.data.loading's names stay importable
    _ALIASES,
    MIN_ROWS,
    TIME_ALIASES,
    DataError,
    SymbolInfo,
    _csv_files,
    _default_dirs,
    _norm_name,
    _pick_delimiter,
    _quick_info,
    _read_text,
    _symbol_map,
    check_csv,
    find_symbol_csv,
    header_columns,
    list_symbols,
)
from engine.data.parsing import TimeProblem, decimal_comma, empty_cells, parse_numbers, parse_times
from engine.symbols import SymbolError, validate_symbol

COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
#: Relative slack for OHLC consistency, so a rounding in the last printed digit is not an error.
_OHLC_RTOL = 1e-9


@dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Series:
    """One symbol's validated bars, sorted by time with unique timestamps.

    `frame` has exactly the columns timestamp (datetime64[ns], naive UTC), open, high, low, close,
    volume (float64). Close-only exports have open=high=low=close and volume NaN unless given.
    """

    symbol: str
    path: Path
    frame: pd.DataFrame
    has_ohlc: bool
    #: CSV lines of dated rows without any price (holidays in a Yahoo export), left out of `frame`.
    dropped_lines: tuple[int, ...] = ()

    @property
    def n_rows(self) -> int:
        return len(self.frame)

    @cached_property
    def close(self) -> np.ndarray:
        return self.frame["close"].to_numpy(dtype=np.float64, copy=True)

    @cached_property
    def values(self) -> np.ndarray:
        """[N, 5] float64: open, high, low, close, volume."""
        return self.frame[list(COLUMNS[1:])].to_numpy(dtype=np.float64, copy=True)

    @cached_property
    def timestamps(self) -> np.ndarray:
        return self.frame["timestamp"].to_numpy(dtype="datetime64[ns]", copy=True)

    @property
    def start(self) -> str:
        return _fmt_ts(self.frame["timestamp"].iloc[0])

    @property
    def end(self) -> str:
        return _fmt_ts(self.frame["timestamp"].iloc[-1])


def _fmt_ts(ts: pd.Timestamp) -> str:
    """ISO date for daily bars, ISO date and time when there is a time of day."""
    ts = pd.Timestamp(ts)
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return ts.isoformat()


def load_symbol(symbol: str, data_dirs: Sequence[Path] | None = None, *, dayfirst: bool | None = None) -> Series:
    """Load `SYMBOL.csv` from the data folders; `dayfirst` as in `load_csv`."""
    sym = validate_symbol(symbol)
    return load_csv(find_symbol_csv(sym, data_dirs), sym, dayfirst=dayfirst)


# ---------------------------------------------------------------------------------------------
# Parsing


def load_csv(path: Path, symbol: str | None = None, *, dayfirst: bool | None = None) -> Series:
    """Load and validate one CSV into a Series, or raise the first DataError found in it.

    `dayfirst`: True reads numeric dates as D/M/Y, False as M/D/Y, None decides from the file and
    refuses a file that reads both ways (`engine.data.parsing`).
    """
    path = Path(path)
    if symbol is None:
        try:
            symbol = validate_symbol(path.stem)
        except SymbolError as exc:
            raise DataError(path, None, f"file name is not a symbol ({exc}); rename it SYMBOL.csv") from None
    else:
        symbol = validate_symbol(symbol)
    text = _read_text(path)

    first_line = next(ln for ln in text.splitlines() if ln.strip())
    delim = _pick_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = row, reader.line_num
                continue
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(path, reader.line_num, f"malformed CSV: {exc}") from None
    assert header is not None  # the file has a non-blank line

    col, seen, adjusted = header_columns(path, header, header_line)

    if not rows:
        raise DataError(path, header_line, "no data rows (header only)")
    if len(rows) < MIN_ROWS:
        raise DataError(path, lines[0], f"too few rows: need at least {MIN_ROWS}, have {len(rows)}")

    width = len(header)
    for row, ln in zip(rows, lines, strict=True):
        if len(row) != width and not (len(row) > width and not any(c.strip() for c in row[width:])):
            raise DataError(path, ln, f"expected {width} fields like the header, got {len(row)}")

    def cells(key: str) -> list[str]:
        i = col[key]
        return [row[i].strip() if i < len(row) else "" for row in rows]

    # Which columns are really there: a column left empty on every row is an absent column.
    for key in ("open", "high", "low", "close", "volume"):
        if key in col and not any(cells(key)):
            if key == "close" and "adj_close" in col and any(cells("adj_close")):
                col["close"], adjusted = col["adj_close"], True
            elif key != "close":
                del col[key]
    ohlc_present = [c for c in ("open", "high", "low") if c in col]
    if ohlc_present and len(ohlc_present) < 3:
        missing = [c for c in ("open", "high", "low") if c not in col]
        raise DataError(path, header_line, f"has {', '.join(ohlc_present)} but no {', '.join(missing)}: "
                        "give all of open, high, low, close, or close only")
    has_ohlc = len(ohlc_present) == 3

    # A dated row with no price at all (Yahoo writes `null` in every column on a market holiday)
    # means "no bar that day": it is dropped and its line kept in `Series.dropped_lines`, which
    # `data check` prints. A row with some prices and not others is still refused below, and so is a
    # file where such rows are more than a tenth: that is missing data, not holidays.
    price_keys = [k for k in ("open", "high", "low", "close", "adj_close") if k in col]
    no_price = np.logical_and.reduce([empty_cells(cells(k)) for k in price_keys])
    dropped: tuple[int, ...] = ()
    if no_price.any():
        dropped = tuple(lines[i] for i in np.flatnonzero(no_price))
        if len(dropped) > len(rows) // 10:
            raise DataError(path, dropped[0], f"{len(dropped)} of {len(rows)} rows have no price (first here); "
                            "fill or remove them")
        rows = [r for r, skip in zip(rows, no_price, strict=True) if not skip]
        lines = [ln for ln, skip in zip(lines, no_price, strict=True) if not skip]
        if len(rows) < MIN_ROWS:
            raise DataError(path, lines[0], f"too few rows with prices: need at least {MIN_ROWS}, have {len(rows)}")

    # Timestamps
    raw_ts = cells("timestamp")
    for k, v in enumerate(raw_ts):
        if not v:
            raise DataError(path, lines[k], "missing timestamp")
    ts = parse_times(raw_ts, dayfirst)
    if isinstance(ts, TimeProblem):
        raise DataError(path, lines[ts.row], ts.reason)
    bad = np.flatnonzero(ts.isna().to_numpy())
    if bad.size:
        k = int(bad[0])
        forced = "" if dayfirst is None else f" (read {'day' if dayfirst else 'month'} first, as asked)"
        raise DataError(path, lines[k], f"unparseable timestamp {raw_ts[k]!r}{forced}")

    # Numbers
    comma = decimal_comma([c for key in ("open", "high", "low", "close") if key in col for c in cells(key)], delim)
    data: dict[str, np.ndarray] = {}
    for key in ("open", "high", "low", "close", "volume"):
        if key not in col:
            continue
        raw = cells(key)
        vals = parse_numbers(raw, comma_decimal=comma, volume=key == "volume")
        if key == "volume":
            vals[empty_cells(raw)] = np.nan  # no volume on this row: fine, no model needs it
            nonfinite = np.flatnonzero(~np.isfinite(vals) & ~empty_cells(raw))
        else:
            nonfinite = np.flatnonzero(~np.isfinite(vals))
        if nonfinite.size:
            k = int(nonfinite[0])
            name = seen[key] if key in seen else key
            if not raw[k]:
                reason = f"missing {key} value (column {name!r})" + (
                    "; give open/high/low on every row or leave the columns empty" if key in ("open", "high", "low") else "")
            else:
                try:
                    float(raw[k])
                    reason = f"{key} is not a finite number: {raw[k]!r} (NaN/inf not allowed)"
                except ValueError:
                    reason = f"non-numeric {key} value {raw[k]!r}"
            raise DataError(path, lines[k], reason)
        data[key] = vals

    for key in PRICE_COLUMNS:
        if key in data:
            bad = np.flatnonzero(data[key] <= 0)
            if bad.size:
                k = int(bad[0])
                raise DataError(path, lines[k], f"non-positive {key} price {data[key][k]:g}")
    if "volume" in data:
        bad = np.flatnonzero(np.nan_to_num(data["volume"], nan=0.0) < 0)
        if bad.size:
            k = int(bad[0])
            raise DataError(path, lines[k], f"negative volume {data['volume'][k]:g}")
    if has_ohlc:
        o, h, lo, c = data["open"], data["high"], data["low"], data["close"]
        tol = _OHLC_RTOL * np.maximum(np.abs(h), np.abs(lo))
        checks = [
            (h + tol < lo, "high {h:g} is below low {l:g}"),
            (o > h + tol, "open {o:g} is above high {h:g}"),
            (o + tol < lo, "open {o:g} is below low {l:g}"),
        ]
        if not adjusted:  # an adjusted close need not lie inside unadjusted high/low
            checks += [(c > h + tol, "close {c:g} is above high {h:g}"),
                       (c + tol < lo, "close {c:g} is below low {l:g}")]
        first_bad: tuple[int, str] | None = None
        for mask, msg in checks:
            idx = np.flatnonzero(mask)
            if idx.size and (first_bad is None or idx[0] < first_bad[0]):
                k = int(idx[0])
                first_bad = (k, "inconsistent OHLC: " + msg.format(o=o[k], h=h[k], l=lo[k], c=c[k]))
        if first_bad is not None:
            raise DataError(path, lines[first_bad[0]], first_bad[1])

    # Order and uniqueness
    t = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.arange(len(t))
    d = np.diff(t)
    if d.size and (d < 0).all() and len(t) > 1:
        order = order[::-1]  # newest-first export: reverse, it is still in order
        t = t[::-1]
        d = np.diff(t)
    dup = np.flatnonzero(d == 0)
    back = np.flatnonzero(d < 0)
    if dup.size and (not back.size or dup[0] <= back[0]):
        k = int(dup[0]) + 1
        raise DataError(path, lines[order[k]], f"duplicate timestamp {raw_ts[order[k]]!r} "
                        f"(same as line {lines[order[k - 1]]})")
    if back.size:
        k = int(back[0]) + 1
        raise DataError(path, lines[order[k]], f"timestamps not sorted: {raw_ts[order[k]]!r} comes after "
                        f"{raw_ts[order[k - 1]]!r} (line {lines[order[k - 1]]}); sort oldest first")

    close = data["close"][order]
    frame = pd.DataFrame({"timestamp": pd.to_datetime(t).astype("datetime64[ns]")})
    for key in ("open", "high", "low"):
        frame[key] = data[key][order] if has_ohlc else close
    frame["close"] = close
    frame["volume"] = data["volume"][order] if "volume" in data else np.full(len(t), np.nan)
    frame = frame.reset_index(drop=True)
    return Series(symbol=symbol, path=path, frame=frame, has_ohlc=has_ohlc, dropped_lines=dropped)
