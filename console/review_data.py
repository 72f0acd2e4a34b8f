"""What the review screens show, as typed rows: the Stocks line of each symbol and the snapshot of
decisions the Compare/Configs/Regressions screens read, plus the rule for "the decision at a horizon".

Why apart from console.services: these are pure functions of store records (no I/O, no threads), so
they are tested and reused without a workspace; ConsoleServices reads the records and calls them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.difficulty import UNKNOWN, tier

if TYPE_CHECKING:  # annotations only: the Stocks screen's first frame comes before the store's records are read
    from store.records import BaselineRow, ComparisonRow, Pick, Promotion, RegressionRow

#: One symbol's CSV as engine.data.list_symbols reports it: (symbol, rows, start, end, source).
SymbolInfo = tuple[str, int, str, str, str]


def tier_for(mae_pct: float | None) -> str:
    """Difficulty tier of a symbol from its naive MAE% (engine.difficulty owns the thresholds)."""
    out = tier(mae_pct)
    return "?" if out == UNKNOWN else out


@dataclass
class StockRow:
    """One line of the Stocks screen; raw numbers kept so sorting is numeric.

    `best_*` is the decision at the screen's horizon: the winner of the latest comparison at that
    horizon (chosen on validation), else the only pick made at it. `best_windows` says which
    validation windows its score is on ("val 12w")."""

    symbol: str
    rows: int
    start: str
    end: str
    source: str = "shipped"  # "shipped" or "workspace"
    baseline_mae_pct: float | None = None
    baseline_windows: int | None = None  # the windows baseline_mae_pct pools (the tier's own span)
    tier: str = "?"
    best_model: str | None = None
    best_score: float | None = None
    best_windows: str = ""
    horizon: int | None = None


@dataclass
class ScreenData:
    """A snapshot of everything the review screens show, read in one go off the loop (typed records)."""

    baselines: list[BaselineRow] = field(default_factory=list)
    comparisons: list[ComparisonRow] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    promotions: list[Promotion] = field(default_factory=list)
    regressions: list[RegressionRow] = field(default_factory=list)
    promoted: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)


def horizons_of(comparisons: Sequence[ComparisonRow], picks: Sequence[Pick]) -> list[int]:
    """Horizons with a decision, most recent comparison's first (then the others, ascending)."""
    recent = sorted(comparisons, key=lambda r: r.updated_at or 0.0, reverse=True)
    order = [r.horizon for r in recent] + sorted({p.horizon for p in picks})
    return list(dict.fromkeys(order))


def best_at(symbol: str, horizon: int, comparisons: Sequence[ComparisonRow],
            picks: Sequence[Pick]) -> tuple[str | None, float | None, str]:
    """(model, validation score, window label) of the decision for `symbol` at `horizon`.

    The comparison winner when there is one (every model scored on the same windows); else a pick
    only when it is the single one at that horizon — picks made on different windows are not ranked."""
    win = [r for r in comparisons if r.symbol == symbol and r.horizon == horizon and r.winner]
    if win:
        r = max(win, key=lambda r: r.updated_at or 0.0)
        return r.model, r.validation.get(r.selection_metric), r.val_windows.short() if r.val_windows else "val ?w"
    ps = [p for p in picks if p.symbol == symbol and p.horizon == horizon]
    if len(ps) == 1:
        p = ps[0]
        return p.model, p.score(), p.val_windows.short() if p.val_windows else "val ?w"
    if ps:
        return None, None, f"{len(ps)} picks: compare them"
    return None, None, ""


def stock_rows(infos: Iterable[SymbolInfo], baselines: Sequence[BaselineRow], comparisons: Sequence[ComparisonRow],
               picks: Sequence[Pick], horizon: int | None) -> list[StockRow]:
    """The Stocks screen's rows, sorted by symbol, with each symbol's tier and its decision at `horizon`."""
    naive: dict[str, tuple[float, int | None]] = {}
    tiers: dict[str, str] = {}
    for b in baselines:  # the tier's own number: persistence MAE% at tier_horizon on tier_span
        if b.tier_mae_pct is not None:
            naive[b.symbol] = (b.tier_mae_pct, b.tier_windows)
            if b.tier:
                tiers[b.symbol] = b.tier
    rows = []
    for sym, n, start, end, src in sorted(infos):
        mae, nw = naive.get(sym, (None, None))
        bm, bs, bw = best_at(sym, horizon, comparisons, picks) if horizon is not None else (None, None, "")
        t = tiers.get(sym) or tier_for(mae)
        rows.append(StockRow(sym, n, start, end, src, mae, nw, "?" if t == "unknown" else t, bm, bs, bw, horizon))
    return rows
