"""baseline: naive persistence / drift / seasonal-naive scores per symbol and horizon, and tiers.

Why it matters: every model is judged against naive persistence on exactly the same windows, and
a symbol's difficulty tier (which drives its training plan) is persistence MAE% at the tier
horizon. So the numbers here come from the same code path as everything else:
`engine.data.split_spans` → `make_windows` on one span → `engine.metrics.evaluate`.
The tier chooses training settings, so by default it is measured on the windows before the test
span (train and validation pooled), even when the rows report on test; `tier_span` and
`tier_mae_pct` are recorded with it.

The default span is "test" (reporting); "val" is what selection code should compare against. The
span is recorded in every row, with the spans' row bounds, so a number is never read on the wrong
span. Everything is vectorised numpy: 24 symbols × 3 horizons take well under a second or two.

Spec params: engine.task_params.BaselineParams (names, types, defaults and help text).
"""

from __future__ import annotations

import time
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.difficulty import DEFAULT_TIER_HORIZON, UNKNOWN, tier
from engine.metrics import finite_or_none
from engine.symbols import validate_symbol
from engine.task_params import BaselineParams

if TYPE_CHECKING:
    from engine.data import Series
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext

_DEFAULTS = BaselineParams()  # the defaults are declared once, on the parameter model
DEFAULT_HORIZONS: tuple[int, ...] = tuple(_DEFAULTS.horizon) if isinstance(_DEFAULTS.horizon, list) else (
    _DEFAULTS.horizon,)
#: Context rows per window. Only drift and seasonal-naive read it (drift's slope spans it); window
#: origins do not depend on it as long as it fits before the span, so models share these windows.
DEFAULT_CONTEXT = _DEFAULTS.context
#: The tier picks training settings (loss, LoRA rank, epochs), so it must not look at the test span.
#: "pretest" pools the train and validation windows (everything before test): far more windows
#: than validation alone at h=64, so the tier is stable, and it matches a whole-history estimate.
DEFAULT_TIER_SPAN = _DEFAULTS.tier_span
TIER_SPANS: tuple[str, ...] = typing.get_args(BaselineParams.model_fields["tier_span"].annotation)
REPORT_SPANS: tuple[str, ...] = typing.get_args(BaselineParams.model_fields["span"].annotation)
DEFAULT_METHODS: tuple[str, ...] = tuple(_DEFAULTS.methods)


def _check_horizons(horizons: Iterable[int] | int) -> list[int]:
    hs = [horizons] if isinstance(horizons, int) else list(horizons)
    if not hs:
        raise ValueError("at least one horizon is needed")
    for h in hs:
        if not isinstance(h, int | np.integer) or isinstance(h, bool) or h < 1:
            raise ValueError(f"horizon must be a positive integer, got {h!r}")
    return sorted({int(h) for h in hs})


def _reason(exc: Exception) -> str:
    """A DataError's reason without the "<data>:" prefix (the row already names the symbol)."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason and getattr(exc, "file", "x") is None else str(exc)


def _ts(t: np.datetime64) -> str:
    return str(np.datetime_as_string(t, unit="D"))


def _score_symbol_horizon(
    series: Series, horizon: int, span: str, context_len: int, stride: int, methods: Sequence[str],
    val_rows: int | None, test_rows: int | None,
) -> list[dict[str, Any]]:
    """Rows for one symbol at one horizon; raises DataError/ValueError when no windows fit."""
    from engine.data import make_windows, split_spans
    from engine.forecasters.naive import NAIVE_METHODS, Persistence
    from engine.metrics import evaluate
    from store.records import WindowSpec

    spans = split_spans(series.n_rows, horizon, val_rows=val_rows, test_rows=test_rows)
    windows = make_windows(series, spans, span, context_len, horizon, stride=stride)
    naive = Persistence().point(windows)
    base = {
        "symbol": series.symbol, "horizon": horizon, "span": span, "n_windows": windows.n,
        "n_rows": series.n_rows, "context_len": context_len, "stride": stride, "spans": spans.to_dict(),
        "target_start": _ts(windows.target_time[0, 0]), "target_end": _ts(windows.target_time[-1, -1]),
        "error": None, "windows": WindowSpec.from_origins(span, windows.origins.tolist(), horizon).to_doc(),
    }
    rows = []
    for key in methods:
        forecaster = NAIVE_METHODS[key]()
        fc = forecaster.forecast(windows, 1)
        point = fc.samples[:, 0, :]
        metrics = evaluate(windows, fc.samples, point, naive_point=naive)
        row = {**base, "model": forecaster.name, "metrics": {k: finite_or_none(v) for k, v in metrics.items()}}
        if "season" in fc.info:
            row["season"] = int(fc.info["season"])
        rows.append(row)
    return rows


def tier_mae_pct(series: Series, horizon: int, tier_span: str = DEFAULT_TIER_SPAN,
                 context_len: int = DEFAULT_CONTEXT, stride: int = 1, val_rows: int | None = None,
                 test_rows: int | None = None) -> tuple[float | None, int]:
    """Persistence MAE% at `horizon` pooled over the windows of `tier_span` (None if undefined), and
    how many windows it pools.

    "pretest" pools train and validation windows; a span with no windows is skipped, and only
    when none has any does the DataError propagate.
    """
    from engine.data import make_windows, split_spans
    from engine.metrics import mae_pct

    spans = split_spans(series.n_rows, horizon, val_rows=val_rows, test_rows=test_rows)
    names = ("train", "val") if tier_span == "pretest" else (tier_span,)
    ys, ps = [], []
    last_exc: ValueError | None = None
    for name in names:
        try:
            w = make_windows(series, spans, name, context_len, horizon, stride=stride)
        except ValueError as exc:
            last_exc = exc
            continue
        ys.append(w.targets)
        ps.append(np.repeat(w.last_close[:, None], horizon, axis=1))
    if not ys:
        assert last_exc is not None
        raise last_exc
    y = np.concatenate(ys)
    return finite_or_none(mae_pct(y, np.concatenate(ps))), int(y.shape[0])


def _error_rows(symbol: str, horizon: int, span: str, methods: Sequence[str], reason: str,
                n_rows: int | None, context_len: int, stride: int) -> list[dict[str, Any]]:
    from engine.forecasters.naive import NAIVE_METHODS

    return [
        {"symbol": symbol, "model": NAIVE_METHODS[k].name, "horizon": horizon, "span": span, "n_windows": 0,
         "n_rows": n_rows, "context_len": context_len, "stride": stride, "metrics": {}, "error": reason}
        for k in methods
    ]


def compute_baselines(
    symbols: Sequence[str],
    horizons: Iterable[int] | int = DEFAULT_HORIZONS,
    data_dirs: Sequence[Path] | None = None,
    span: str = "test",
    *,
    context_len: int = DEFAULT_CONTEXT,
    stride: int = 1,
    tier_horizon: int = DEFAULT_TIER_HORIZON,
    tier_span: str = DEFAULT_TIER_SPAN,
    methods: Sequence[str] = DEFAULT_METHODS,
    val_rows: int | None = None,
    test_rows: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """One row per (symbol, naive method, horizon), all methods on the same windows of `span`.

    Every row carries symbol, model ("naive_persistence" | "naive_drift" | "naive_seasonal"),
    horizon, span, n_windows, metrics (the `engine.metrics.evaluate` keys, None where undefined),
    the symbol's difficulty tier (persistence MAE% at `tier_horizon` on `tier_span`, train+val
    pooled by default so the test span never steers training choices), and
    `error` (None, or why this symbol/horizon has no numbers: that row then has empty metrics).
    Bad arguments raise ValueError before any work; bad data for one symbol never stops the rest.
    """
    from engine.data import SPANS, load_symbol
    from engine.forecasters.naive import NAIVE_METHODS

    if span not in SPANS:
        raise ValueError(f"unknown span {span!r}; choose one of: {', '.join(SPANS)}")
    if tier_span not in TIER_SPANS:
        raise ValueError(f"unknown tier span {tier_span!r}; choose one of: {', '.join(TIER_SPANS)}")
    hs = _check_horizons(horizons)
    if not isinstance(tier_horizon, int) or tier_horizon < 1:
        raise ValueError(f"tier horizon must be a positive integer, got {tier_horizon!r}")
    for name, v in (("context", context_len), ("stride", stride)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    unknown = [m for m in methods if m not in NAIVE_METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown naive method(s) {unknown}; choose from: {', '.join(NAIVE_METHODS)}")
    syms = list(dict.fromkeys(validate_symbol(s) for s in symbols))
    if not syms:
        raise ValueError("no symbols given")

    out: list[dict[str, Any]] = []
    for i, sym in enumerate(syms):
        if cancelled is not None and cancelled():
            break
        try:
            series = load_symbol(sym, data_dirs)
        except ValueError as exc:  # DataError, SymbolError
            for h in hs:
                out.extend(_error_rows(sym, h, span, methods, _reason(exc), None, context_len, stride))
            if progress is not None:
                progress(i + 1, len(syms), sym)
            continue
        sym_rows: list[dict[str, Any]] = []
        tier_mae: float | None = None
        tier_windows: int | None = None
        tier_error: str | None = None
        for h in hs:
            try:
                rows = _score_symbol_horizon(series, h, span, context_len, stride, methods, val_rows, test_rows)
            except ValueError as exc:
                sym_rows.extend(_error_rows(sym, h, span, methods, _reason(exc), series.n_rows, context_len,
                                            stride))
                continue
            sym_rows.extend(rows)
            if h == tier_horizon and span == tier_span and "persistence" in methods:
                row = next(r for r in rows if r["model"] == "naive_persistence")
                tier_mae, tier_windows = row["metrics"]["mae_pct"], row.get("n_windows")
        if tier_mae is None:
            try:
                tier_mae, tier_windows = tier_mae_pct(series, tier_horizon, tier_span, context_len, stride,
                                                      val_rows, test_rows)
            except ValueError as exc:
                tier_error = _reason(exc)
        sym_tier = tier(tier_mae) if tier_mae is not None else UNKNOWN
        for r in sym_rows:
            r["tier"] = sym_tier
            r["tier_horizon"] = tier_horizon
            r["tier_span"] = tier_span
            r["tier_mae_pct"] = tier_mae
            r["tier_windows"] = tier_windows
            if tier_error is not None:
                r["tier_error"] = tier_error
        out.extend(sym_rows)
        if progress is not None:
            progress(i + 1, len(syms), sym)
    return out


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per symbol: tier and persistence MAE% per horizon (what the CLI table and the console show)."""
    by_sym: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = by_sym.setdefault(r["symbol"], {"tier": r.get("tier", UNKNOWN), "n_rows": r.get("n_rows"),
                                            "mae_pct": {}, "errors": {}})
        if r["model"] != "naive_persistence":
            continue
        if r.get("error"):
            s["errors"][str(r["horizon"])] = r["error"]
        else:
            s["mae_pct"][str(r["horizon"])] = r["metrics"].get("mae_pct")
    return by_sym


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """The `baseline` job: rows go back in the result payload (the engine writes them to the store).

    Rows that could not be computed are logged as warnings and left out of the payload; when no
    row at all could be computed the job fails (ValueError naming the first reason).
    """
    from engine import paths

    p = BaselineParams.of(spec.params)
    data_dirs = ctx.data_dirs or paths.data_dirs(ctx.workspace)
    t0 = time.perf_counter()

    def progress(done: int, total: int, sym: str) -> None:
        ctx.events.progress(done, total, stage=sym)

    rows = compute_baselines(
        list(spec.symbols), p.horizon, data_dirs, span=p.span, context_len=p.context, stride=p.stride,
        tier_horizon=p.tier_horizon, tier_span=p.tier_span, methods=tuple(p.methods),
        val_rows=p.val_rows, test_rows=p.test_rows,
        progress=progress, cancelled=ctx.cancelled,
    )
    for r in rows:
        if r.get("error") and r["model"] == "naive_persistence":
            ctx.events.log(f"{r['symbol']} h={r['horizon']}: {r['error']}", level="warning")
    good = [r for r in rows if not r.get("error")]
    if rows and not good and not ctx.cancelled():
        # Nothing computed (impossible horizon, only bad files): the job failed, it did not succeed.
        first = rows[0]
        raise ValueError(f"no baseline could be computed ({first['symbol']} h={first['horizon']}: {first['error']})")
    summary = summarize(rows)
    for sym, s in summary.items():
        ctx.events.log(f"{sym}: tier {s['tier']}; persistence MAE% {s['mae_pct']}")
    return {
        # Error rows are logged above, never stored: they must not overwrite earlier numbers.
        "baselines": good,
        "summary": {
            "symbols": len(summary), "rows": len(rows), "span": p.span,
            "errors": sum(1 for r in rows if r.get("error")), "seconds": round(time.perf_counter() - t0, 3),
            "tiers": {sym: s["tier"] for sym, s in summary.items()},
            "cancelled": ctx.cancelled(),
        },
    }
