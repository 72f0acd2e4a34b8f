"""Compare screen: per symbol × horizon × model rows, the validation MAE% the winner was chosen on
beside the test metrics, DM against naive with its direction, `p` to promote the highlighted row and
`f` to see its forecasts window by window (the Forecast view).

Why numeric sort on raw values: operators sort by MAE% or p-value to find the worst symbols; the
cells keep the raw float. Every MAE% cell names its window count ("1.234 12w" under "Val MAE%").
`p` promotes exactly the highlighted row (its config, adapter, horizon and windows: store source
"comparison"), after a confirmation that shows it beside the live file, a real diff and warnings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from console.messages import ForecastRequested, PromoteRequested
from console.screens.base import ModeScreen, read_for
from console.widgets.table import Cell, KeyedTable, counted_cell, num, txt
from console.words import model_label, plural
from engine.models import NAIVE
from store.records import ComparisonRow, Metrics, WindowSpec
from store.run_listing import windows_label

COLUMNS = (
    ("win", "★"), ("symbol", "Symbol"), ("horizon", "H"), ("model", "Model"), ("val", "Val MAE%"),
    ("test", "Test MAE%"), ("mase", "MASE"), ("cov", "Cov80"), ("dm", "Test DM"), ("impr", "vs naive%"),
)
SORTABLE = [c for c, _ in COLUMNS]
LABELS = dict(COLUMNS)


def comparison_key(row: ComparisonRow) -> str:
    return f"{row.symbol}|{row.horizon}|{row.model}|{row.preset}"


def dm_cell(m: Metrics) -> Cell:
    """"better p=.01" / "worse p=.003": a two-sided p never hides which way the difference goes."""
    if m.dm_stat is None or m.dm_p_two_sided is None:
        return Cell(None, "—", style="dim")
    better = m.dm_stat < 0
    sig = m.dm_p_two_sided < 0.05
    # sorted by the one-sided p of "better than naive"; shown with its direction, never a bare p
    return Cell(m.dm_p_better, f"{'better' if better else 'worse'} p={m.dm_p_two_sided:.2g}",
                style=("green" if better else "red") if sig else "", justify="right")


def mae_cell(v: float | None, spec: WindowSpec | None, style: str = "") -> Cell:
    return counted_cell(v, spec.count if spec else None, style)


def comparison_cells(row: ComparisonRow) -> dict[str, Cell]:
    win = row.winner
    return {
        "win": Cell(win, "★" if win else "", style="bold yellow"),
        "symbol": txt(row.symbol, style="bold" if win else ""),
        "horizon": num(row.horizon, "{:d}"),
        "model": txt(model_label(row.model, row.preset),
                     style="bold green" if win else ""),
        "val": mae_cell(row.validation.mae_pct, row.val_windows, style="bold" if win else ""),
        "test": mae_cell(row.test.mae_pct, row.windows),
        "mase": num(row.test.mase, "{:.3f}"),
        # naive is deterministic: its band has no width, so its 0.00 coverage says nothing
        "cov": (Cell(None, "no band", style="dim", justify="right") if row.model == NAIVE
                else num(row.test.coverage80, "{:.2f}")),
        "dm": dm_cell(row.test),
        "impr": num(row.improvement_vs_naive_pct),
    }


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = d
    return out


#: What makes two promoted documents the same decision (when/by whom and provenance do not).
DECISION_FIELDS: tuple[str, ...] = ("model", "preset", "horizon", "context", "seed", "config")


def decision_diff(current: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(setting, promoted now, candidate) for every decision setting that differs (adapter by hashes)."""
    cur = current or {}
    a = _flat({k: cur[k] for k in DECISION_FIELDS if k in cur})
    b = _flat({k: new[k] for k in DECISION_FIELDS if k in new})
    a["adapter"] = ((cur.get("adapter") or {}).get("files")) or None
    b["adapter"] = ((new.get("adapter") or {}).get("files")) or None
    return [(k, a.get(k, "—"), b.get(k, "—")) for k in sorted(set(a) | set(b)) if a.get(k, "—") != b.get(k, "—")]


def diff_table(current: dict[str, Any] | None, new: dict[str, Any]) -> Any:
    """A real diff of the decision settings, or a line saying it is identical to what is promoted."""
    rows = decision_diff(current, new)
    if current is not None and not rows:
        return Text("identical to what is promoted (same config, adapter, horizon and preset)", style="green")
    t = Table("setting", "promoted now", "candidate", box=None, pad_edge=False)
    for k, a, b in rows:
        if k == "adapter":
            a = f"{len(a)} files" if isinstance(a, dict) else "none (base weights)" if current else "—"
            b = f"{len(b)} files (sha256 recorded)" if isinstance(b, dict) else "none (base weights)"
        t.add_row(k, json.dumps(a) if not isinstance(a, str) else a, json.dumps(b) if not isinstance(b, str) else b,
                  style="bold yellow")
    return t


class CompareScreen(ModeScreen):
    MODE: ClassVar[str] = "compare"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort_next", "Sort", id="compare-sort"),
        Binding("o", "flip_order", "Order", id="compare-order"),
        Binding("p", "promote", "Promote", id="compare-promote"),
        Binding("w", "winners_only", "Winners", id="compare-winners"),
        Binding("f", "forecast", "Forecast", id="compare-forecast"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, ComparisonRow] = {}
        self.winners_only = False
        self._shown = 0

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="compare-table")
        yield Static("", id="compare-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.reload()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#compare-table", KeyedTable)

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="compare-load")
    async def _load(self) -> None:
        data = await read_for(self, self.services.screen_data())
        self.rows = {comparison_key(r): r for r in data.comparisons}
        self._render_rows()

    def _render_rows(self) -> None:
        shown = {k: comparison_cells(r) for k, r in self.rows.items() if r.winner or not self.winners_only}
        self.table.sync(shown)
        self._shown = len(shown)
        self._update_detail()

    def _update_detail(self) -> None:
        detail = self.query_one("#compare-detail", Static)
        if not self.rows:
            detail.update("No comparisons yet: after train + validate, press r and queue a compare job "
                          "(or a pipeline). Sort: s / click a header.")
        else:
            col = self.table.sort_column
            sort = (f"sorted by {LABELS[col]} ({'desc' if self.table.sort_reverse else 'asc'})" if col in LABELS
                    else "in the comparison's order")
            cur = self.rows.get(self.table.current_id or "")
            why = ""
            if cur is not None:
                why = (f" · {cur.symbol} h={cur.horizon}: winner chosen on val {cur.selection_metric} "
                       f"({windows_label(cur.val_windows, 'val')}), test reported ({windows_label(cur.windows, 'test')})")
                if cur.decision_note:
                    why += f" · {cur.decision_note}"
            detail.update(f"{plural(self._shown, 'row')} · {sort} · "
                          f"★ = winner (on validation) · p = promote the highlighted row{why}")

    def on_data_table_row_highlighted(self) -> None:
        if self.rows:
            self._update_detail()

    def action_sort_next(self) -> None:
        cur = self.table.sort_column
        nxt = SORTABLE[(SORTABLE.index(cur) + 1) % len(SORTABLE)] if cur in SORTABLE else "val"
        self.table.sort_by(nxt, reverse=False)
        self._render_rows()

    def action_flip_order(self) -> None:
        self.table.sort_by(self.table.sort_column or "val", reverse=not self.table.sort_reverse)
        self._render_rows()

    def action_winners_only(self) -> None:
        self.winners_only = not self.winners_only
        self._render_rows()

    def action_promote(self) -> None:
        row = self.rows.get(self.table.current_id or "")
        if row is None:
            self.notify("no comparison row selected", severity="warning")
            return
        if not row.promotable():
            self.notify(f"{row.model} is an ensemble: it has no single config trading code could run; "
                        "promote one of its members", severity="warning")
            return
        self.post_message(PromoteRequested(row.model, row.symbol, "comparison", row.horizon, row.preset))

    def action_forecast(self) -> None:
        row = self.rows.get(self.table.current_id or "")
        if row is None:
            self.notify("no comparison row selected", severity="warning")
            return
        self.post_message(ForecastRequested(row.symbol, row.model, row.horizon, row.preset, [row.job_id]))

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Forecast view of highlighted row", "Actuals vs forecasts, window by window", self.action_forecast)
        yield ("Promote highlighted comparison", "Write hyperparams/<model>/<SYMBOL>.json", self.action_promote)
        yield ("Sort comparisons by next column", "Cycle the sort column", self.action_sort_next)
        yield ("Show winners only", "Toggle winner filter", self.action_winners_only)


def _m(doc: dict[str, Any] | None, span: str, name: str = "mae_pct") -> Any:
    return ((doc or {}).get(span) or {}).get(name)


def _fmt(v: Any, f: str = "{:.3f}") -> str:
    return f.format(v) if isinstance(v, int | float) and not isinstance(v, bool) else ("—" if v is None else str(v))


def _wins(doc: dict[str, Any] | None, span: str) -> str:
    spec = ((doc or {}).get("windows") or {}).get(span)
    return f"{'val' if span == 'validation' else 'test'} {spec['count']}w" if isinstance(spec, dict) else "?w"


def _dm(doc: dict[str, Any] | None, span: str) -> str:
    d = (((doc or {}).get("naive") or {}).get("dm") or {}).get(span) or {}
    if d.get("stat") is None or d.get("p_two_sided") is None:
        return "—"
    return f"{d.get('direction')} p={d['p_two_sided']:.2g}"


def _naive_cell(doc: dict[str, Any]) -> str:
    """Naive's val / test MAE% on the decision's own windows (so with its window counts)."""
    nv = (doc.get("naive") or {}).get("validation") or {}
    nt = (doc.get("naive") or {}).get("test") or {}
    return f"{_fmt(nv.get('mae_pct'))} {_wins(doc, 'validation')} / {_fmt(nt.get('mae_pct'))} {_wins(doc, 'test')}"


def warnings_for(new: dict[str, Any]) -> list[str]:
    """Why promoting this might be a mistake: it loses to naive on test, or its validation win over
    naive is not significant (one-sided DM p ≥ 0.05). None for a naive decision itself."""
    if new.get("model") == "naive":
        return []
    out = []
    t, nt = _m(new, "test"), ((new.get("naive") or {}).get("test") or {}).get("mae_pct")
    if isinstance(t, int | float) and isinstance(nt, int | float) and nt > 0 and t >= nt:
        out.append(f"loses to naive on test: MAE% {t:.3f} vs naive {nt:.3f} ({(t - nt) / nt * 100:.0f}% worse)")
    d = ((new.get("naive") or {}).get("dm") or {}).get("validation") or {}
    p = d.get("p_better")
    if p is None:
        out.append("no DM test on validation (too few windows): the win over naive is not supported")
    elif p >= 0.05:
        out.append(f"not significantly better than naive on validation (one-sided DM p={p:.2g})")
    return out


def promotion_body(model: str, symbol: str, current: dict[str, Any] | None, new: dict[str, Any] | None,
                   why_not: str | None = None) -> Group:
    """The promote confirmation's body: horizon, val/test metrics beside the live file's, a real diff
    (its warnings, `warnings_for`, are the dialog's fixed lines)."""
    h = (new or {}).get("horizon")
    head = Text.assemble(("Promote ", ""), (model, "bold"), (" for ", ""), (symbol, "bold"),
                         (f" at h={h}" if h else "", "bold"), (f" ({(new or {}).get('preset')})" if new else "", ""),
                         ("\nwrites ", "dim"), (f"hyperparams/{model}/{symbol}.json", "cyan"))
    if new is None:
        return Group(head, Text(f"\nNothing to promote: {why_not or 'no pick stored for this model and symbol'}",
                                style="red"))
    t = Table("", "promoted now" if current else "promoted now: nothing", "candidate", box=None, pad_edge=False)
    rows = [
        ("horizon", _fmt((current or {}).get("horizon") or ((current or {}).get("windows") or {}).get("horizon"),
                         "{}"), _fmt(h, "{}")),
        ("val MAE%", f"{_fmt(_m(current, 'validation'))} {_wins(current, 'validation')}" if current else "—",
         f"{_fmt(_m(new, 'validation'))} {_wins(new, 'validation')}"),
        ("test MAE%", f"{_fmt(_m(current, 'test'))} {_wins(current, 'test')}" if current else "—",
         f"{_fmt(_m(new, 'test'))} {_wins(new, 'test')}"),
        ("naive val/test MAE%", _naive_cell(current) if current else "—", _naive_cell(new)),
        ("DM vs naive (val)", _dm(current, "validation") if current else "—", _dm(new, "validation")),
        ("DM vs naive (test)", _dm(current, "test") if current else "—", _dm(new, "test")),
    ]
    for r in rows:
        t.add_row(*r)
    parts: list[Any] = [head, Text(""), t, Text("\nchanges against the promoted decision:" if current else
                                                "\nnothing promoted yet; the candidate's settings:", style="dim"),
                        diff_table(current, new)]
    return Group(*parts)
