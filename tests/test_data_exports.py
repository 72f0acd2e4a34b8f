"""Real-world export shapes: each one loads with the right values, or is refused with the right reason.

The shapes are the ones people actually download (Yahoo, Stooq, investing.com, MetaTrader-like
broker dumps, index/FX/yield close-only files, European spreadsheets); each test writes the file as
that source writes it and checks what the loader made of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import DataError, load_csv


def _load(tmp_path: Path, text: str, **kw: object):  # type: ignore[no-untyped-def]
    p = tmp_path / "ABC.csv"
    p.write_text(text, encoding="utf-8")
    return load_csv(p, **kw)  # type: ignore[arg-type]


def _dates(s) -> list[str]:  # type: ignore[no-untyped-def]
    return s.frame["timestamp"].dt.strftime("%Y-%m-%d").tolist()


def test_yahoo_with_adj_close_keeps_close_and_volume(tmp_path: Path) -> None:
    s = _load(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
                        "2024-01-02,187.15,188.44,183.89,185.64,184.94,82488700\n"
                        "2024-01-03,184.22,185.88,183.43,184.25,183.56,58414500\n")
    assert s.has_ohlc and s.close.tolist() == [185.64, 184.25]
    assert s.frame["volume"].tolist() == [82488700, 58414500]


def test_close_only_with_empty_ohlc_cells_is_close_only(tmp_path: Path) -> None:
    # index levels / FX / yields: the export keeps the columns and leaves them empty
    s = _load(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n"
                        "2024-01-02,,,,4742.83,4742.83,\n2024-01-03,,,,4704.81,4704.81,\n2024-01-04,,,,4688.68,4688.68,\n")
    assert not s.has_ohlc
    np.testing.assert_array_equal(s.frame["open"], s.close)
    assert s.frame["volume"].isna().all()


def test_adjusted_close_dump_with_empty_close_uses_adj_close(tmp_path: Path) -> None:
    s = _load(tmp_path, "date,close,adj close\n2024-01-02,,10.5\n2024-01-03,,10.7\n")
    assert s.close.tolist() == [10.5, 10.7] and not s.has_ohlc


def test_ohlc_with_empty_volume_column_loads_volume_nan(tmp_path: Path) -> None:
    s = _load(tmp_path, "timestamp,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,\n2024-01-03,10.5,12,10,11.5,\n")
    assert s.has_ohlc and s.frame["volume"].isna().all() and s.close.tolist() == [10.5, 11.5]


def test_volume_missing_on_some_rows_is_nan_not_an_error(tmp_path: Path) -> None:
    s = _load(tmp_path, "timestamp,open,high,low,close,volume\n"
                        "2024-01-02,10,11,9,10.5,100\n2024-01-03,10.5,12,10,11.5,-\n2024-01-04,11,12,10,11,\n")
    v = s.frame["volume"].to_numpy()
    assert v[0] == 100 and np.isnan(v[1:]).all()


def test_day_first_dotted_dates_are_read_day_first(tmp_path: Path) -> None:
    s = _load(tmp_path, "Date;Close\n12.01.1999;10\n13.01.1999;11\n14.01.1999;12\n")
    assert _dates(s) == ["1999-01-12", "1999-01-13", "1999-01-14"]


def test_day_first_slashed_dates_are_read_day_first(tmp_path: Path) -> None:
    s = _load(tmp_path, "Date,Close\n11/01/1999,10\n12/01/1999,11\n13/01/1999,12\n")
    assert _dates(s) == ["1999-01-11", "1999-01-12", "1999-01-13"]


def test_month_first_us_dates_newest_first_investing_com(tmp_path: Path) -> None:
    # investing.com: "Price" is the close, volume with K/M suffixes, "Change %" ignored, newest first
    s = _load(tmp_path, 'Date,Price,Open,High,Low,Vol.,Change %\n'
                        '"01/16/2024","4,765.98","4,772.35","4,782.34","4,739.58","2.41M","-0.37%"\n'
                        '"01/12/2024","4,783.83","4,791.18","4,802.40","4,768.98","1.9K","0.08%"\n')
    assert _dates(s) == ["2024-01-12", "2024-01-16"]
    assert s.close.tolist() == [4783.83, 4765.98] and s.frame["volume"].tolist() == [1900.0, 2.41e6]


def test_ambiguous_dates_are_refused_naming_both_readings_and_override_reads_them(tmp_path: Path) -> None:
    text = "Date,Close\n01/02/2024,10\n03/04/2024,11\n"  # both readings are in time order
    with pytest.raises(DataError) as info:
        _load(tmp_path, text)
    err = info.value
    assert err.row == 2 and "2024-02-01 (day first)" in err.reason and "2024-01-02 (month first)" in err.reason
    assert "--dayfirst" in err.reason and "--monthfirst" in err.reason
    assert _dates(_load(tmp_path, text, dayfirst=True)) == ["2024-02-01", "2024-04-03"]
    assert _dates(_load(tmp_path, text, dayfirst=False)) == ["2024-01-02", "2024-03-04"]


def test_ambiguous_dates_decided_by_time_order(tmp_path: Path) -> None:
    # day first: Jan 2, Jan 3, Feb 1 (in order); month first: Feb 1, Mar 1, Jan 2 (not in order)
    s = _load(tmp_path, "Date,Close\n02/01/2024,10\n03/01/2024,11\n01/02/2024,12\n")
    assert _dates(s) == ["2024-01-02", "2024-01-03", "2024-02-01"]


def test_forced_reading_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unparseable timestamp '13/01/1999' \(read month first, as asked\)") as info:
        _load(tmp_path, "Date,Close\n12/01/1999,10\n13/01/1999,11\n", dayfirst=False)
    assert info.value.row == 3


def test_tz_aware_daily_bars_stay_on_their_exchange_date(tmp_path: Path) -> None:
    s = _load(tmp_path, "timestamp,close\n2024-01-02T00:00:00+01:00,10\n2024-01-03T00:00:00+01:00,11\n"
                        "2024-01-04 16:00:00-05:00,12\n2024-01-05 16:00:00-05:00,13\n")
    # mixed offsets (DST / two zones) but one time of day per offset group is not "daily": keep wall clock
    assert _dates(s) == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    s2 = _load(tmp_path, "Date,Close\n2024-03-08 16:00:00-05:00,10\n2024-03-11 16:00:00-04:00,11\n")
    assert s2.frame["timestamp"].tolist() == [pd.Timestamp("2024-03-08"), pd.Timestamp("2024-03-11")]


def test_utc_z_stamps_keep_their_date(tmp_path: Path) -> None:
    s = _load(tmp_path, "time,close\n2024-01-02T00:00:00Z,10\n2024-01-03T00:00:00Z,11\n")
    assert s.frame["timestamp"].tolist() == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]


def test_semicolon_decimal_comma_european_export_is_parsed(tmp_path: Path) -> None:
    # European spreadsheet export: semicolons, day-first dates, '.' thousands and ',' decimals
    s = _load(tmp_path, "Date;Open;High;Low;Close;Volume\n"
                        "02.01.2024;1.234,50;1.240,00;1.230,25;1.238,75;12.345\n"
                        "03.01.2024;1.238,75;1.250,00;1.236,00;1.249,00;10.000\n")
    assert _dates(s) == ["2024-01-02", "2024-01-03"]
    assert s.close.tolist() == [1238.75, 1249.0] and s.frame["volume"].tolist() == [12345, 10000]


def test_semicolon_file_with_decimal_points_is_not_read_as_decimal_comma(tmp_path: Path) -> None:
    s = _load(tmp_path, "Date;Close;Volume\n2024-01-02;1,234.5;100\n2024-01-03;1,240.25;100\n")
    assert s.close.tolist() == [1234.5, 1240.25]


def test_thousands_separators_in_quoted_cells(tmp_path: Path) -> None:
    s = _load(tmp_path, 'Date,Open,High,Low,Close,Volume\n'
                        '2024-01-02,"1,234.50","1,240.00","1,230.25","1,238.75","12,345,678"\n'
                        '2024-01-03,"1,238.75","1,250.00","1,236.00","1,249.00","10,000,000"\n')
    assert s.close.tolist() == [1238.75, 1249.0] and s.frame["volume"].tolist() == [12345678, 10000000]


def test_year_first_slashes_and_dots(tmp_path: Path) -> None:
    s = _load(tmp_path, "<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<VOL>\n"
                        "2024.01.02\t1.1\t1.2\t1.0\t1.15\t500\n2024.01.03\t1.15\t1.3\t1.1\t1.25\t600\n")
    assert _dates(s) == ["2024-01-02", "2024-01-03"] and s.close.tolist() == [1.15, 1.25]


def test_fred_series_without_a_close_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no close column") as info:
        _load(tmp_path, "DATE,DGS10\n2024-01-02,3.95\n2024-01-03,.\n")
    assert info.value.row == 1


def test_partly_empty_ohlc_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing open value .*on every row or leave the columns empty") as info:
        _load(tmp_path, "Date,Open,High,Low,Close\n2024-01-02,10,11,9,10.5\n2024-01-03,,,,11\n")
    assert info.value.row == 3


def test_yahoo_null_rows_are_left_out_and_listed_partial_ones_refused(tmp_path: Path) -> None:
    # Yahoo writes `null` in every column of a day without a bar; that row is no bar, not an error
    bars = [f"2024-01-{d:02d},10,11,9,10.5,10.4,100\n" for d in range(2, 22)]
    s = _load(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n" + bars[0]
              + "2024-01-03,null,null,null,null,null,null\n" + "".join(bars[2:]))
    assert s.dropped_lines == (3,) and "2024-01-03" not in _dates(s) and s.n_rows == 19
    # a row with some prices and not the others is still refused
    with pytest.raises(DataError, match=r"missing close value") as info:
        _load(tmp_path, "Date,Open,High,Low,Close,Adj Close,Volume\n" + bars[0] + "2024-01-03,10,11,9,,,\n"
              + "".join(bars[2:]))
    assert info.value.row == 3
    # more than a tenth of the rows without a price is missing data, not holidays
    with pytest.raises(DataError, match=r"3 of 21 rows have no price"):
        _load(tmp_path, "Date,Close\n" + "".join(f"2024-01-{d:02d},{'' if d % 7 == 0 else 10}\n" for d in range(1, 22)))
