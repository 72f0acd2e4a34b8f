"""Train/validation/test spans and leak-free walk-forward windows.

The old scripts leaked: a model's context included the target row, and normalisation used
statistics that saw the horizon. Here a window is built by *copying* rows `origin-C .. origin-1`
out of the series (fancy indexing, never a view), the targets are rows `origin .. origin+H-1`,
and the MASE scale uses only train-span rows before the origin. Nothing a model receives can
reach a row at or after its first target.

Spans are counted from the end of the series, so adding older history never moves the test span:
  test = the last `test_rows` rows, val = the `val_rows` before those, train = everything earlier.
Default sizes: each of val and test is 15% of the rows, but at least `horizon + MIN_SPAN_WINDOWS - 1`
rows (so a span always holds at least MIN_SPAN_WINDOWS stride-1 windows); train must keep at least
`MIN_TRAIN_ROWS` rows. For the shipped data (400-2500 rows) at horizon 64 that is 95-375 rows
per evaluation span (95 at 400 rows, 375 at 2500).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from engine.data.loading import DataError, Series

SPANS: tuple[str, ...] = ("train", "val", "test")
#: Default share of the rows given to each of validation and test.
DEFAULT_SPAN_FRACTION = 0.15
#: A default val/test span holds at least this many stride-1 windows at the requested horizon.
MIN_SPAN_WINDOWS = 32
#: The train span keeps at least this many rows (the MASE scale and fine-tuning need some history).
MIN_TRAIN_ROWS = 32


@dataclass(frozen=True)
class Spans:
    """Disjoint, contiguous spans: train=[0,train_end) val=[train_end,val_end) test=[val_end,n_rows)."""

    n_rows: int
    train_end: int
    val_end: int

    def __post_init__(self) -> None:
        if not 0 < self.train_end < self.val_end < self.n_rows:
            raise DataError(None, None, f"invalid spans: need 0 < train_end < val_end < n_rows, "
                            f"got train_end={self.train_end} val_end={self.val_end} n_rows={self.n_rows}")

    def bounds(self, span: str) -> tuple[int, int]:
        """Half-open row range [start, end) of `span` ("train", "val" or "test")."""
        if span == "train":
            return 0, self.train_end
        if span == "val":
            return self.train_end, self.val_end
        if span == "test":
            return self.val_end, self.n_rows
        raise ValueError(f"unknown span {span!r}; choose one of: {', '.join(SPANS)}")

    def rows(self, span: str) -> int:
        lo, hi = self.bounds(span)
        return hi - lo

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows, "train_end": self.train_end, "val_end": self.val_end,
            "train": [0, self.train_end], "val": [self.train_end, self.val_end],
            "test": [self.val_end, self.n_rows],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spans:
        """Inverse of `to_dict` (extra keys ignored), so a run's recorded spans can be rebuilt."""
        return cls(n_rows=int(d["n_rows"]), train_end=int(d["train_end"]), val_end=int(d["val_end"]))


def default_span_rows(n_rows: int, horizon: int) -> int:
    """Rows in each of val and test when not given: 15% of the rows, at least horizon + 31."""
    return max(math.ceil(DEFAULT_SPAN_FRACTION * n_rows), horizon + MIN_SPAN_WINDOWS - 1)


def split_spans(n_rows: int, horizon: int, *, val_rows: int | None = None,
                test_rows: int | None = None) -> Spans:
    """Split `n_rows` into train/val/test counted from the end (see the module docstring)."""
    if int(horizon) < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    horizon = int(horizon)
    default = default_span_rows(n_rows, horizon)
    val = default if val_rows is None else int(val_rows)
    test = default if test_rows is None else int(test_rows)
    for name, size in (("val", val), ("test", test)):
        if size < horizon:
            raise DataError(None, None, f"{name} span of {size} rows is shorter than the horizon {horizon}")
    need = val + test + MIN_TRAIN_ROWS
    if n_rows < need:
        raise DataError(None, None, f"too few rows to split at horizon {horizon}: need {need} rows "
                        f"(val {val} + test {test} + train {MIN_TRAIN_ROWS}), have {n_rows}")
    return Spans(n_rows=n_rows, train_end=n_rows - val - test, val_end=n_rows - test)


@dataclass(frozen=True, eq=False)  # holds arrays: compare by identity
class Windows:
    """Walk-forward windows; `context` physically excludes the targets (copied rows, no views)."""

    symbol: str
    span: str
    context_len: int
    horizon: int
    origins: np.ndarray       # int64 [W]   row index of the first target
    context: np.ndarray       # float64 [W, C, 5] rows origin-C .. origin-1 (open, high, low, close, volume)
    context_time: np.ndarray  # datetime64[ns] [W, C]
    target_time: np.ndarray   # datetime64[ns] [W, H] (calendar positions of the targets, not data)
    targets: np.ndarray       # float64 [W, H] close at rows origin .. origin+H-1
    scale: np.ndarray         # float64 [W] mean |diff(close)| over train-span rows < origin (MASE)

    @property
    def n(self) -> int:
        return int(self.origins.shape[0])

    @property
    def context_close(self) -> np.ndarray:
        return self.context[:, :, 3]

    @property
    def last_close(self) -> np.ndarray:
        return self.context[:, -1, 3]

    def subset(self, idx: Any) -> Windows:
        """Windows selected by an index array, boolean mask or slice (arrays copied)."""
        arrays: dict[str, Any] = {f.name: np.array(getattr(self, f.name)[idx], copy=True)
                  for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)}
        if arrays["origins"].ndim != 1:
            raise ValueError("subset index must select a 1-D set of windows (use a list/array, not an int)")
        return replace(self, **arrays)


def spread_stride(n_origins: int, stride: int = 1, max_windows: int | None = None) -> int:
    """The stride that fits `n_origins` possible origins into at most `max_windows` windows.

    At least `stride`; None = no cap. With the result at or below the horizon the windows' targets
    cover every row of the span; above it they leave gaps (the window spec records rows covered).
    """
    if max_windows is None or n_origins <= 0:
        return max(1, int(stride))
    return max(int(stride), math.ceil(n_origins / int(max_windows)))


def _origin_range(spans: Spans, span: str, context_len: int, horizon: int) -> tuple[int, int]:
    lo, hi = spans.bounds(span)
    return max(lo, context_len), hi - horizon


def window_count(spans: Spans, span: str, context_len: int, horizon: int, stride: int = 1) -> int:
    """How many windows `make_windows` yields for these settings (0 when none fit), without building them."""
    first, last = _origin_range(spans, span, context_len, horizon)
    return 0 if last < first else (last - first) // stride + 1


_SPAN_WORDS = {"train": "training", "val": "validation", "test": "test"}


def check_fits(n_rows: int, horizon: int, context: int = 0, *, val_rows: int | None = None,
               test_rows: int | None = None, spans: tuple[str, ...] = ("val", "test"), stride: int = 1) -> Spans:
    """The one rule for "these settings fit a series of `n_rows` rows": the split (`split_spans`) and at
    least one window in each of `spans` (the training stride on train, stride 1 elsewhere). DataError
    (reason only, no file) says what does not fit. Train's preflight and the console's start-run form
    check with it before anything is queued; the tasks split with `split_spans` itself."""
    sp = split_spans(n_rows, horizon, val_rows=val_rows, test_rows=test_rows)
    counts = {s: window_count(sp, s, context, horizon, stride if s == "train" else 1) for s in spans}
    if counts and min(counts.values()) < 1:
        left = " and ".join(f"{c} {_SPAN_WORDS[s]}" for s, c in counts.items())
        raise DataError(None, None, f"context {context} + horizon {horizon} leave {left} windows in {n_rows} rows; "
                        "use a shorter context or horizon")
    return sp


def make_windows(series: Series, spans: Spans, span: str, context_len: int, horizon: int,
                 stride: int = 1, max_windows: int | None = None) -> Windows:
    """Windows whose targets lie entirely inside `span`; context may reach back into earlier spans.

    Origins step by `stride` back from the last possible one (so the span's final rows are always
    scored). `max_windows` caps the count by widening the stride (`spread_stride`), so the windows
    still spread over the whole span instead of keeping only its most recent sliver. DataError "no
    usable windows: need N rows, have M" when none fit, N counting rows through the first window's
    last target.
    """
    if context_len < 1 or horizon < 1 or stride < 1:
        raise ValueError(f"context_len, horizon and stride must be >= 1, got {context_len}, {horizon}, {stride}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1 or None, got {max_windows}")
    if spans.n_rows != series.n_rows:
        raise DataError(series.path, None, f"spans were split for {spans.n_rows} rows but the series has "
                        f"{series.n_rows}; split again")
    lo, hi = spans.bounds(span)
    first, last = _origin_range(spans, span, context_len, horizon)
    if last < first:
        need = first + horizon
        raise DataError(series.path, None, f"no usable windows: need {need} rows, have {hi} "
                        f"({span} span rows {lo}..{hi - 1}, context {context_len}, horizon {horizon})")
    stride = spread_stride(last - first + 1, stride, max_windows)
    origins = np.ascontiguousarray(np.arange(last, first - 1, -stride, dtype=np.int64)[::-1])

    values = series.values
    close = values[:, 3]
    times = series.timestamps
    ctx_idx = origins[:, None] + np.arange(-context_len, 0, dtype=np.int64)[None, :]
    tgt_idx = origins[:, None] + np.arange(horizon, dtype=np.int64)[None, :]
    context = values[ctx_idx]           # fancy indexing: a fresh copy
    context_time = times[ctx_idx]
    target_time = times[tgt_idx]
    targets = close[tgt_idx]

    # MASE scale: mean |close[r] - close[r-1]| for 1 <= r < min(origin, train_end); prefix sums
    # only ever read entries before that bound.
    with np.errstate(invalid="ignore", over="ignore"):  # only validated rows < origin are ever read
        absdiff = np.abs(np.diff(close[: spans.train_end]))
    csum = np.concatenate(([0.0], np.cumsum(absdiff)))
    m = np.minimum(origins, spans.train_end)  # rows usable for the scale
    n_diff = m - 1
    scale = np.full(origins.shape, np.nan)
    ok = n_diff >= 1
    scale[ok] = csum[n_diff[ok]] / n_diff[ok]

    return Windows(symbol=series.symbol, span=span, context_len=int(context_len), horizon=int(horizon),
                   origins=origins, context=context, context_time=context_time, target_time=target_time,
                   targets=targets, scale=scale)
