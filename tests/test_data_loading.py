"""engine.data loading: common exports accepted, every kind of bad file refused with file:line: reason."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import DataError, find_symbol_csv, list_symbols, load_csv, load_symbol
from engine.symbols import ALL_SYMBOLS, SymbolError

GOOD = (
    "timestamp,open,high,low,close,volume\n"
    "2024-01-02,10,11,9,10.5,100\n"
    "2024-01-03,10.5,12,10,11.5,200\n"
    "2024-01-04,11.5,12,11,11.8,150\n"
)


def _write(tmp_path: Path, text: str | bytes, name: str = "ABC.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Accepted exports


def test_canonical_file_loads(tmp_path: Path) -> None:
    s = load_csv(_write(tmp_path, GOOD))
    assert s.symbol == "ABC" and s.has_ohlc and s.n_rows == 3
    assert list(s.frame.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert s.frame["timestamp"].dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(s.close, [10.5, 11.5, 11.8])
    assert s.values.shape == (3, 5) and s.values.dtype == np.float64
    np.testing.assert_array_equal(s.values[:, 3], s.close)
    assert (s.start, s.end) == ("2024-01-02", "2024-01-04")


def test_yahoo_export_uses_close_not_adj_close(tmp_path: Path) -> None:
    text = (
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-02,10,11,9,10.5,5.25,100\n"
        "2024-01-03,10.5,12,10,11.5,5.75,200\n"
    )
    s = load_csv(_write(tmp_path, text))
    np.testing.assert_array_equal(s.close, [10.5, 11.5])
    assert s.has_ohlc


def test_adj_close_used_when_there_is_no_close(tmp_path: Path) -> None:
    text = "date,OPEN,HIGH,LOW,Adj Close,VOLUME\n2024-01-02,10,11,9,5.25,100\n2024-01-03,10.5,12,10,5.75,200\n"
    s = load_csv(_write(tmp_path, text))
    np.testing.assert_array_equal(s.close, [5.25, 5.75])  # adjusted close may lie outside high/low


def test_close_only_export(tmp_path: Path) -> None:
    text = "Datetime,Close\n2024-01-02 00:00:00,10\n2024-01-03 00:00:00,11\n2024-01-04 00:00:00,12\n"
    s = load_csv(_write(tmp_path, text))
    assert not s.has_ohlc
    for col in ("open", "high", "low"):
        np.testing.assert_array_equal(s.frame[col].to_numpy(), s.close)
    assert s.frame["volume"].isna().all()


def test_epoch_semicolon_bom_and_newest_first(tmp_path: Path) -> None:
    # 2024-01-02/03/04 as epoch seconds, newest first, semicolons, a BOM and CRLF line ends.
    text = "\ufefftime;close;volume\r\n1704326400;12;5\r\n1704240000;11;5\r\n1704153600;10;5\r\n"
    s = load_csv(_write(tmp_path, text.encode("utf-8")))
    np.testing.assert_array_equal(s.close, [10, 11, 12])
    assert s.frame["timestamp"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-02", "2024-01-03", "2024-01-04"]
    np.testing.assert_array_equal(s.frame["volume"].to_numpy(), [5, 5, 5])


def test_timezone_aware_timestamps_keep_the_exchange_wall_clock(tmp_path: Path) -> None:
    text = "timestamp,close\n2024-01-02T09:30:00-05:00,10\n2024-01-02T10:30:00-05:00,11\n"
    s = load_csv(_write(tmp_path, text))
    assert s.frame["timestamp"].tolist() == [pd.Timestamp("2024-01-02 09:30"), pd.Timestamp("2024-01-02 10:30")]


def test_shipped_data_all_loads_and_is_consistent() -> None:
    infos = list_symbols()
    assert [i.symbol for i in infos] == sorted(ALL_SYMBOLS)
    for info in infos:
        s = load_symbol(info.symbol)
        assert s.n_rows == info.rows and (s.start, s.end) == (info.start, info.end)
        assert s.has_ohlc and (s.frame["volume"] > 0).all()


# ---------------------------------------------------------------------------------------------
# Symbols and folders


def test_list_symbols_later_folder_overrides_and_skips_bad_names(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(a, GOOD, "XYZ.csv")
    _write(a, GOOD, "ONLYA.csv")
    _write(b, GOOD.replace("2024-01-04,11.5,12,11,11.8,150\n", ""), "xyz.csv")
    _write(b, GOOD, "not a symbol.csv")
    _write(b, "garbage", "notes.txt")
    infos = {i.symbol: i for i in list_symbols([a, b])}
    assert set(infos) == {"XYZ", "ONLYA"}
    assert infos["XYZ"].path == b / "xyz.csv" and infos["XYZ"].rows == 2
    assert (infos["ONLYA"].start, infos["ONLYA"].end, infos["ONLYA"].rows) == ("2024-01-02", "2024-01-04", 3)
    assert find_symbol_csv("xyz", [a, b]) == b / "xyz.csv"
    assert load_symbol("onlya", [a, b]).symbol == "ONLYA"


@pytest.mark.parametrize("bad", ["../SPY", "a/b", "..", ".hidden", "", "SP Y"])
def test_path_like_symbols_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SymbolError):
        find_symbol_csv(bad, [tmp_path])
    with pytest.raises(SymbolError):
        load_symbol(bad, [tmp_path])


def test_unknown_symbol_names_the_folders(tmp_path: Path) -> None:
    with pytest.raises(SymbolError, match=r"unknown symbol 'NOPE': no NOPE.csv in .*"):
        find_symbol_csv("NOPE", [tmp_path])


def test_data_error_format_and_pickle() -> None:
    e = DataError("x.csv", 3, "bad thing")
    assert str(e) == "x.csv:3: bad thing" and (e.file, e.row, e.reason) == ("x.csv", 3, "bad thing")
    assert str(DataError("x.csv", None, "empty file")) == "x.csv: empty file"
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.file, e2.row, e2.reason) == ("x.csv", 3, "bad thing") and isinstance(e2, ValueError)


# ---------------------------------------------------------------------------------------------
# Malformed files: (content, expected row, reason pattern)

H = "timestamp,open,high,low,close,volume\n"
MALFORMED: dict[str, tuple[str | bytes, int | None, str]] = {
    "empty": ("", None, r"^empty file$"),
    "whitespace_only": ("\n  \n\n", None, r"^empty file$"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", None, r"binary data"),
    "invalid_utf8": (b"timestamp,close\n2024-01-02,\xff\xfe10\n", 2, r"invalid UTF-8"),
    "no_header": ("2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,10.5,100\n", 1, r"^no header row"),
    "unknown_columns": ("foo,bar\nx,y\n", 1, r"no recognisable columns"),
    "header_only": (H, 1, r"no data rows \(header only\)"),
    "one_row": (H + "2024-01-02,10,11,9,10.5,100\n", 2, r"too few rows: need at least 2, have 1"),
    "missing_close": ("timestamp,open,high,low,volume\n2024-01-02,1,2,1,5\n2024-01-03,1,2,1,5\n", 1,
                      r"no close column"),
    "missing_timestamp": ("open,high,low,close\n1,2,1,1.5\n1,2,1,1.5\n", 1, r"no timestamp column"),
    "partial_ohlc": ("date,high,close\n2024-01-02,2,1\n2024-01-03,2,1\n", 1, r"has high but no open, low"),
    "duplicate_column": ("date,Close,close\n2024-01-02,1,1\n2024-01-03,1,1\n", 1, r"duplicate column 'close'"),
    "wrong_field_count": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9\n", 3,
                          r"expected 6 fields like the header, got 4"),
    "empty_timestamp": (H + "2024-01-02,10,11,9,10.5,100\n,10,11,9,10.5,100\n", 3, r"^missing timestamp$"),
    "bad_timestamp": (H + "2024-01-02,10,11,9,10.5,100\n2024-13-45,10,11,9,10.5,100\n", 3,
                      r"unparseable timestamp '2024-13-45'"),
    "non_numeric": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,abc,100\n", 3,
                    r"non-numeric close value 'abc'"),
    "nan_value": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,NaN,100\n", 3,
                  r"close is not a finite number: 'NaN'"),
    "inf_value": (H + "2024-01-02,10,inf,9,10.5,100\n2024-01-03,10,11,9,10,100\n", 2,
                  r"high is not a finite number: 'inf'"),
    "empty_value": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,,10.5,100\n", 3, r"missing low value"),
    "bad_volume": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,10.5,lots\n", 3,
                   r"non-numeric volume value 'lots'"),
    "zero_price": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,0,11,0,10.5,100\n", 3, r"non-positive open price 0"),
    "negative_price": ("date,close\n2024-01-02,1\n2024-01-03,-2\n", 3, r"non-positive close price -2"),
    "negative_volume": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,10.5,-5\n", 3, r"negative volume -5"),
    "high_below_low": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,9,11,10,100\n", 3,
                       r"inconsistent OHLC: high 9 is below low 11"),
    "close_above_high": (H + "2024-01-02,10,11,9,12,100\n2024-01-03,10,11,9,10,100\n", 2,
                         r"inconsistent OHLC: close 12 is above high 11"),
    "open_below_low": (H + "2024-01-02,10,11,9,10,100\n2024-01-03,8,11,9,10,100\n", 3,
                       r"inconsistent OHLC: open 8 is below low 9"),
    "duplicate_timestamp": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-03,10,11,9,10.5,100\n"
                            "2024-01-03,10,11,9,10.5,100\n", 4, r"duplicate timestamp '2024-01-03' \(same as line 3\)"),
    "unsorted": (H + "2024-01-02,10,11,9,10.5,100\n2024-01-04,10,11,9,10.5,100\n"
                 "2024-01-03,10,11,9,10.5,100\n", 4, r"timestamps not sorted: '2024-01-03' comes after '2024-01-04'"),
    "unclosed_quote": ('timestamp,close\n2024-01-02,1\n"2024-01-03,2\n', 3, r"expected 2 fields like the header, got 1"),
    "control_garbage": ("\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10junk,,\n", None, r"binary or garbage data"),
    "mixed_date_formats": ("Date,Close\n2024-01-02,1\n01/03/2024,2\n", 3, r"unparseable timestamp '01/03/2024'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csv_is_refused_with_reason(tmp_path: Path, case: str) -> None:
    content, row, pattern = MALFORMED[case]
    path = _write(tmp_path, content)
    before = _snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_csv(path)
    err = info.value
    assert err.file == str(path)
    assert err.row == row, str(err)
    assert re.search(pattern, err.reason), str(err)
    prefix = f"{path}:{err.row}: " if err.row is not None else f"{path}: "
    assert str(err) == prefix + err.reason
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "NOPE.csv")
    d = tmp_path / "DIR.csv"
    d.mkdir()
    with pytest.raises(DataError, match="is a folder"):
        load_csv(d)


def test_file_name_that_is_not_a_symbol(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD, "my data.csv")
    with pytest.raises(DataError, match="file name is not a symbol"):
        load_csv(p)
    assert load_csv(p, symbol="mine").symbol == "MINE"
