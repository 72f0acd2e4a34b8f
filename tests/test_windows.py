"""Spans and walk-forward windows: disjoint spans from the end, and no window can see its future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.data import DataError, Series, Spans, load_symbol, make_windows, split_spans
from engine.data.windows import MIN_SPAN_WINDOWS, MIN_TRAIN_ROWS, default_span_rows
from engine.symbols import ALL_SYMBOLS


def _series(n: int = 400, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    frame = pd.DataFrame({
        "timestamp": pd.bdate_range("2020-01-01", periods=n).astype("datetime64[ns]"),
        "open": close * 0.99, "high": close * 1.02, "low": close * 0.98, "close": close,
        "volume": rng.integers(1, 1000, n).astype(np.float64),
    })
    return Series(symbol="TST", path=Path("TST.csv"), frame=frame, has_ohlc=True)


def _corrupt_from(series: Series, cut: int, rng: np.random.Generator) -> Series:
    """A copy whose rows at/after `cut` are garbage (NaN, inf, huge, negative, shuffled times)."""
    frame = series.frame.copy()
    n = len(frame) - cut
    if n <= 0:
        return Series(series.symbol, series.path, frame, series.has_ohlc)
    garbage = rng.choice([np.nan, np.inf, -1e12, 1e12, 0.0, -3.0], size=(n, 5))
    frame.loc[cut:, ["open", "high", "low", "close", "volume"]] = garbage
    frame.loc[cut:, "timestamp"] = pd.Timestamp("2262-01-01") - pd.to_timedelta(rng.integers(0, 10**6, n), "s")
    return Series(series.symbol, series.path, frame, series.has_ohlc)


# ---------------------------------------------------------------------------------------------
# Spans


def test_split_spans_counted_from_the_end() -> None:
    s = split_spans(1000, 16, val_rows=100, test_rows=50)
    assert (s.train_end, s.val_end, s.n_rows) == (850, 950, 1000)
    assert s.bounds("train") == (0, 850) and s.bounds("val") == (850, 950) and s.bounds("test") == (950, 1000)
    assert s.to_dict() == {"n_rows": 1000, "train_end": 850, "val_end": 950,
                           "train": [0, 850], "val": [850, 950], "test": [950, 1000]}
    assert Spans.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown span 'holdout'"):
        s.bounds("holdout")


def test_default_spans_are_15_percent_but_hold_enough_windows() -> None:
    assert default_span_rows(2000, 64) == 300
    assert default_span_rows(400, 64) == 64 + MIN_SPAN_WINDOWS - 1
    s = split_spans(400, 64)
    assert s.n_rows - s.val_end == s.val_end - s.train_end == 95 and s.train_end == 210


@pytest.mark.parametrize("horizon", [1, 16, 32, 64])
def test_default_spans_work_for_every_shipped_symbol(horizon: int) -> None:
    for sym in ALL_SYMBOLS:
        series = load_symbol(sym)
        spans = split_spans(series.n_rows, horizon)
        for span in ("val", "test"):
            w = make_windows(series, spans, span, context_len=64, horizon=horizon)
            assert w.n >= MIN_SPAN_WINDOWS
        assert spans.train_end >= MIN_TRAIN_ROWS


def test_split_spans_errors() -> None:
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        split_spans(100, 0)
    with pytest.raises(DataError, match="val span of 10 rows is shorter than the horizon 16"):
        split_spans(1000, 16, val_rows=10)
    with pytest.raises(DataError, match=r"too few rows to split at horizon 64: need \d+ rows .* have 100"):
        split_spans(100, 64)
    with pytest.raises(DataError, match="invalid spans"):
        Spans(n_rows=10, train_end=5, val_end=5)


# ---------------------------------------------------------------------------------------------
# Windows


def test_window_contents_and_alignment() -> None:
    series = _series(400)
    spans = split_spans(400, 8, val_rows=60, test_rows=40)
    w = make_windows(series, spans, "val", context_len=32, horizon=8)
    lo, hi = spans.bounds("val")
    np.testing.assert_array_equal(w.origins, np.arange(lo, hi - 8 + 1))
    assert w.context.shape == (w.n, 32, 5) and w.targets.shape == (w.n, 8)
    assert w.context_time.shape == (w.n, 32) and w.target_time.shape == (w.n, 8)
    vals, close, ts = series.values, series.close, series.timestamps
    for i, o in enumerate(w.origins):
        np.testing.assert_array_equal(w.context[i], vals[o - 32 : o])
        np.testing.assert_array_equal(w.targets[i], close[o : o + 8])
        np.testing.assert_array_equal(w.target_time[i], ts[o : o + 8])
        assert w.context_time[i, -1] < w.target_time[i, 0]
        expected = np.abs(np.diff(close[: min(o, spans.train_end)])).mean()
        assert w.scale[i] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(w.last_close, close[w.origins - 1])
    np.testing.assert_array_equal(w.context_close, w.context[:, :, 3])
    # every target inside the span
    assert w.origins.min() >= lo and (w.origins + 8).max() <= hi


def test_context_is_a_copy_not_a_view() -> None:
    series = _series(300)
    spans = split_spans(300, 4, val_rows=40, test_rows=40)
    w = make_windows(series, spans, "train", context_len=16, horizon=4)
    assert not np.shares_memory(w.context, series.values)
    assert not np.shares_memory(w.context, series.frame["close"].to_numpy())
    before = series.close.copy()
    w.context[:] = -1.0
    w.targets[:] = -1.0
    np.testing.assert_array_equal(series.close, before)
    np.testing.assert_array_equal(series.frame["close"].to_numpy(), before)


def test_stride_anchored_at_the_end_and_max_windows_spreads_over_the_span() -> None:
    series = _series(300)
    spans = split_spans(300, 5, val_rows=50, test_rows=50)
    w = make_windows(series, spans, "test", context_len=20, horizon=5, stride=7)
    assert w.origins[-1] == 300 - 5 and np.all(np.diff(w.origins) == 7) and w.origins[0] >= 250
    # 46 possible origins (250..295) capped at 3 windows: stride 16, still reaching the span's start
    w2 = make_windows(series, spans, "test", context_len=20, horizon=5, max_windows=3)
    np.testing.assert_array_equal(w2.origins, [263, 279, 295])
    w3 = make_windows(series, spans, "test", context_len=20, horizon=5, max_windows=46)
    np.testing.assert_array_equal(w3.origins, np.arange(250, 296))
    sub = w.subset([0, 2])
    np.testing.assert_array_equal(sub.origins, w.origins[[0, 2]])
    np.testing.assert_array_equal(sub.context, w.context[[0, 2]])
    assert sub.horizon == 5 and sub.span == "test" and sub.n == 2
    assert w.subset(w.origins > 280).n == int((w.origins > 280).sum())


def test_train_windows_need_full_context_and_scale_uses_train_rows_only() -> None:
    series = _series(400)
    spans = split_spans(400, 10, val_rows=60, test_rows=60)
    w = make_windows(series, spans, "train", context_len=50, horizon=10)
    assert w.origins[0] == 50 and w.origins[-1] == spans.train_end - 10
    t = make_windows(series, spans, "test", context_len=50, horizon=10)
    # test windows: scale frozen at the train span (never the val/test rows)
    expected = np.abs(np.diff(series.close[: spans.train_end])).mean()
    np.testing.assert_allclose(t.scale, expected, rtol=1e-12)


def test_no_usable_windows_message() -> None:
    series = _series(200)
    spans = split_spans(200, 16, val_rows=40, test_rows=40)
    with pytest.raises(DataError, match=r"no usable windows: need 200 rows, have 160"):
        make_windows(series, spans, "val", context_len=184, horizon=16)
    with pytest.raises(DataError, match=r"spans were split for 100 rows"):
        make_windows(series, split_spans(100, 4, val_rows=10, test_rows=10), "val", 8, 4)
    with pytest.raises(ValueError, match="must be >= 1"):
        make_windows(series, spans, "val", context_len=0, horizon=4)


@pytest.mark.parametrize(("context_len", "horizon", "stride"), [(1, 1, 1), (16, 4, 1), (48, 16, 3), (100, 32, 5)])
def test_leak_garbage_after_origin_changes_nothing_a_forecast_sees(context_len: int, horizon: int, stride: int) -> None:
    """Overwrite every row at/after a cut with garbage: every window whose origin <= cut (so whose
    forecast is made before the cut) keeps exactly the same context, context times and scale."""
    series = _series(420, seed=1)
    spans = split_spans(420, horizon, val_rows=max(60, horizon + 20), test_rows=max(60, horizon + 20))
    rng = np.random.default_rng(7)
    checked = 0
    for span in ("train", "val", "test"):
        clean = make_windows(series, spans, span, context_len, horizon, stride=stride)
        cuts = np.unique(np.concatenate([clean.origins[:: max(1, clean.n // 12)], clean.origins[-1:]]))
        for cut in cuts:
            dirty = make_windows(_corrupt_from(series, int(cut), rng), spans, span, context_len, horizon,
                                 stride=stride)
            np.testing.assert_array_equal(dirty.origins, clean.origins)
            seen = clean.origins <= cut
            assert seen.any()
            np.testing.assert_array_equal(dirty.context[seen], clean.context[seen])
            np.testing.assert_array_equal(dirty.context_time[seen], clean.context_time[seen])
            np.testing.assert_array_equal(dirty.scale[seen], clean.scale[seen])
            checked += int(seen.sum())
            # and the garbage really is in the data the later windows' targets come from
            if cut < spans.n_rows - 1:
                assert not np.array_equal(dirty.targets[clean.origins + horizon > cut],
                                          clean.targets[clean.origins + horizon > cut])
    assert checked > 50


def test_train_val_mae_windows_are_the_validate_default_windows() -> None:
    """train's val MAE% and validate's val_* are computed on the same windows (same cap, same spread)."""
    from engine.evaluation import DEFAULT_MAX_WINDOWS
    from engine.forecasters.training import mae_window_index

    for n_rows, horizon in ((300, 5), (4000, 8)):
        series = _series(n_rows)
        spans = split_spans(n_rows, horizon)
        all_w = make_windows(series, spans, "val", 20, horizon)
        capped = make_windows(series, spans, "val", 20, horizon, max_windows=DEFAULT_MAX_WINDOWS)
        np.testing.assert_array_equal(all_w.origins[mae_window_index(all_w.n, DEFAULT_MAX_WINDOWS)], capped.origins)
