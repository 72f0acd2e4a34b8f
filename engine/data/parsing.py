"""Cell parsing for CSV exports: time stamps and numbers, each with one reading for the whole file.

Why per file and not per cell: a day-first export read month-first cell by cell silently swaps
days and months for the first twelve days of every month. Every column is therefore read one way,
decided from the whole column (pandas' vectorised string and datetime functions do the work), and a
file that can be read two ways is refused with both readings named.

Time stamps:
- unix epoch seconds / ms / us / ns (the unit from the magnitude), as UTC;
- ISO dates and date-times (`2024-01-02`, `2024-01-02T09:30:00`), year-first with `/` or `.`;
- `D.M.YYYY`, `D/M/YYYY`, `D-M-YYYY` (also 2-digit years) and the same month-first: the file is read
  day first when some first field is > 12 or the separator is a dot (no locale writes M.D.Y), month
  first when some second field is > 12, and when no field decides it, the one reading that keeps
  the rows in time order; otherwise `dayfirst` must be given (`--dayfirst` / `--monthfirst`);
- anything else pandas' own parser reads consistently (`Jan 2, 2024`);
- a UTC offset or zone suffix (`-05:00`, `Z`, `UTC`) is dropped: the wall-clock time of the exchange
  is kept, so a daily bar stamped `2024-01-02T00:00:00+01:00` stays on 2024-01-02. When every
  zone-stamped row has the same time of day the rows are daily bars and become plain dates.

Numbers: `1234.5`, thousands separators (`1,234.5`, `1 234.5`), and decimal commas (`1.234,5`, `1234,5`)
in semicolon- or tab-separated files (a comma-separated file has a decimal point by definition).
Volume may also carry K/M/B suffixes (`1.2M`), and an empty/`-`/`n/a` volume is NaN.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: A trailing UTC offset or zone name after a time of day (a date's own `-02` is never matched).
_ZONE = re.compile(r"(\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
#: Two numbers then a year: D.M.Y or M/D/Y; the last group is the rest (a time of day).
_DMY = re.compile(r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4}|\d{2})((?:[ T].*)?)$")
#: Year-first with slashes or dots.
_YMD = re.compile(r"^(\d{4})[./](\d{1,2})[./](\d{1,2})((?:[ T].*)?)$")
_EMPTY_CELLS = frozenset({"", "-", "--", "n/a", "na", "nan", "null", "none"})
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9}


@dataclass(frozen=True)
class TimeProblem:
    """Why a time column cannot be read: the 0-based row and the reason."""

    row: int
    reason: str


def _epoch(numeric: pd.Series) -> pd.Series | None:
    mag = float(numeric.abs().max())
    if mag < 1e4:  # a 4-digit year column is not an epoch
        return None
    unit = "s" if mag < 1e11 else "ms" if mag < 1e14 else "us" if mag < 1e17 else "ns"
    return pd.to_datetime(numeric, unit=unit, errors="coerce").astype("datetime64[ns]")


def _iso(s: pd.Series) -> pd.Series:
    """Parse ISO-like strings (no zone) consistently; NaT where a string is not ISO."""
    best: pd.Series | None = None
    for fmt in ("ISO8601", None):
        try:
            with warnings.catch_warnings():  # "could not infer format": the per-element fallback is the point
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(s, errors="coerce", format=fmt) if fmt else pd.to_datetime(s, errors="coerce")
        except (ValueError, TypeError, OverflowError):
            continue
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        if best is None or parsed.isna().sum() < best.isna().sum():
            best = parsed
        if not parsed.isna().any():
            break
    if best is None:
        return pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    return best.astype("datetime64[ns]")


def _reading(parts: pd.DataFrame, day_col: int, month_col: int) -> pd.Series:
    year = parts[3].astype(int)
    year = year.where(parts[3].str.len() == 4, np.where(year < 69, 2000 + year, 1900 + year))
    iso = (year.astype(str).str.zfill(4) + "-" + parts[month_col].str.zfill(2) + "-"
           + parts[day_col].str.zfill(2) + parts[4].fillna(""))
    return _iso(iso)


def _monotonic(t: pd.Series) -> bool:
    d = np.diff(t.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    return bool(d.size == 0 or (d > 0).all() or (d < 0).all())


def _day_month(s: pd.Series, dayfirst: bool | None) -> pd.Series | TimeProblem:
    parts = s.str.extract(_DMY)
    first, second = parts[0].astype(int), parts[2].astype(int)
    readings = {"day first": _reading(parts, 0, 2), "month first": _reading(parts, 2, 0)}
    if dayfirst is not None:
        return readings["day first" if dayfirst else "month first"]
    ok = {k: v for k, v in readings.items() if not v.isna().any()}
    if (parts[1] == ".").all() and "day first" in ok:  # no locale writes M.D.Y
        return ok["day first"]
    if (first > 12).any() and "day first" in ok:
        return ok["day first"]
    if (second > 12).any() and "month first" in ok:
        return ok["month first"]
    if len(ok) == 1:
        return next(iter(ok.values()))
    if not ok:  # neither reading works everywhere: report the better one's first failure
        return min(readings.values(), key=lambda v: int(v.isna().sum()))
    ordered = [k for k, v in ok.items() if _monotonic(v)]
    if len(ordered) == 1:
        return ok[ordered[0]]
    a, b = ok["day first"], ok["month first"]
    differ = np.flatnonzero((a != b).to_numpy())
    if not differ.size:
        return a
    k = int(differ[0])
    return TimeProblem(k, f"ambiguous date {s.iloc[k]!r}: reads as {a.iloc[k]:%Y-%m-%d} (day first) or "
                          f"{b.iloc[k]:%Y-%m-%d} (month first); pass --dayfirst or --monthfirst")


def parse_times(raw: Sequence[str], dayfirst: bool | None = None) -> pd.Series | TimeProblem:
    """Every time field read one way (datetime64[ns], naive; NaT where unreadable), or a TimeProblem.

    `dayfirst` True/False forces D/M/Y or M/D/Y for numeric dates; None decides from the file.
    """
    s = pd.Series(list(raw), dtype=object).astype(str).str.strip()
    numeric = pd.to_numeric(s, errors="coerce")
    if numeric.notna().all():
        ep = _epoch(numeric)
        return ep if ep is not None else pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    local = s.str.replace(_ZONE, r"\1", regex=True)
    zoned = local != s
    local = local.str.replace(_YMD, lambda m: f"{m[1]}-{m[2]}-{m[3]}{m[4]}", regex=True)
    if local.str.match(_DMY).all():
        out = _day_month(local, dayfirst)
        if isinstance(out, TimeProblem):
            return out
    else:
        out = _iso(local)
    if zoned.any() and not out.isna().any():
        tod = out[zoned] - out[zoned].dt.normalize()
        if tod.nunique() == 1:  # one time of day on every zoned row: daily bars, keep the date
            out = out.where(~zoned, out.dt.normalize())
    return out


# ---------------------------------------------------------------------------------------------
# numbers

_THOUSANDS_POINT = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
_THOUSANDS_COMMA = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})+(?:,\d*)?$")
_THOUSANDS_THEN_POINT = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+\.\d*$")


def decimal_comma(cells: Sequence[str], delimiter: str) -> bool:
    """Whether a file writes decimal commas: never in a comma-separated file; in a semicolon/tab file
    when some price has a comma and none is written `1,234.5` (a thousands comma before a point)."""
    if delimiter == ",":
        return False
    s = pd.Series(list(cells), dtype=object).astype(str).str.strip().str.replace(r"[\s\u00a0']", "", regex=True)
    return bool(s.str.contains(",", regex=False).any() and not s.str.match(_THOUSANDS_THEN_POINT).any())


def parse_numbers(raw: Sequence[str], *, comma_decimal: bool = False, volume: bool = False) -> np.ndarray:
    """float64 values; NaN where a cell is not a number (the caller names the cell and the reason).

    Volume cells may be empty or a placeholder (NaN, not an error) or carry a K/M/B suffix.
    """
    s = pd.Series(list(raw), dtype=object).astype(str).str.strip().str.strip('"')
    s = s.str.replace(r"[\s\u00a0']", "", regex=True)  # 1 234.5 / 1'234.5
    if comma_decimal:
        s = s.where(~s.str.match(_THOUSANDS_COMMA), s.str.replace(".", "", regex=False))
        s = s.str.replace(",", ".", regex=False)
    else:
        s = s.where(~s.str.match(_THOUSANDS_POINT), s.str.replace(",", "", regex=False))
    factor = pd.Series(1.0, index=s.index)
    if volume:
        suffix = s.str[-1:].str.lower()
        has = suffix.isin(list(_SUFFIX)) & s.str[:-1].str.match(r"^[+-]?\d*\.?\d+$")
        factor = factor.where(~has, suffix.map(_SUFFIX))
        s = s.where(~has, s.str[:-1])
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64) * factor.to_numpy()


def empty_cells(raw: Sequence[str]) -> np.ndarray:
    """Boolean mask of cells that mean "no value" (empty, `-`, `n/a`, `null`, ...): an empty volume, or
    a price column of a row with no bar (Yahoo's `null` on a holiday)."""
    s = pd.Series(list(raw), dtype=object).astype(str).str.strip().str.strip('"').str.lower()
    return s.isin(_EMPTY_CELLS).to_numpy()
