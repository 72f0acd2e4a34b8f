"""Compare screen: per symbol × horizon × model metrics, winner marked, DM vs naive with direction, promote key.

Why numeric sort on raw values: operators sort by MAE% or p-value to find the worst symbols; the
cells keep the raw float. Promotion goes through a confirmation modal that shows the change
against the currently promoted config, then `store.promote` writes hyperparams/<model>/<SYMBOL>.json.
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

from console.screens.base import ModeScreen
from console.services import metric_of
from console.widgets.table import Cell, KeyedTable, num, txt
from engine.models import FOUNDATION_MODELS

COLUMNS = (
    ("win", "★"), ("symbol", "Symbol"), ("horizon", "H"), ("model", "Model"), ("mae_pct", "MAE%"),
    ("mase", "MASE"), ("crps", "CRPS"), ("cov", "Cov80"), ("dm_p", "DM vs naive"), ("impr", "vs naive%"),
)
SORTABLE = [c for c, _ in COLUMNS]


def comparison_key(row: dict[str, Any]) -> str:
    return f"{row.get('symbol')}|{row.get('horizon')}|{row.get('model')}"


def comparison_cells(row: dict[str, Any]) -> dict[str, Cell]:
    win = bool(row.get("winner"))
    stat, p2, pb = metric_of(row, "dm_stat"), metric_of(row, "dm_p_two_sided"), metric_of(row, "dm_p_better")
    side = None if stat is None or p2 is None else ("better" if stat < 0 else "worse" if stat > 0 else "equal")
    dm_style = "" if side is None or p2 >= 0.05 else ("green" if side == "better" else "red")
    return {
        "win": Cell(win, "★" if win else "", style="bold yellow"),
        "symbol": txt(row.get("symbol"), style="bold" if win else ""),
        "horizon": num(row.get("horizon"), "{:d}") if isinstance(row.get("horizon"), int) else txt(row.get("horizon")),
        "model": txt(row.get("model"), style="bold green" if win else ""),
        "mae_pct": num(metric_of(row, "mae_pct", "test_mae_pct")),
        "mase": num(metric_of(row, "mase"), "{:.3f}"),
        "crps": num(metric_of(row, "crps"), "{:.3f}"),
        "cov": num(metric_of(row, "coverage80"), "{:.2f}"),
        # sorted by the one-sided p of "better than naive"; shown with its direction, never a bare p
        "dm_p": Cell(pb, f"{side} p={p2:.2g}" if side else "—", style=dm_style or ("dim" if side is None else ""),
                     justify="right"),
        "impr": num(metric_of(row, "improvement_pct", "improvement_vs_naive_pct")),
    }


def diff_table(current: dict[str, Any] | None, new: dict[str, Any] | None) -> Any:
    """Side-by-side key diff of the promoted JSON vs the candidate (changed keys highlighted)."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(d, dict):
            for k, v in d.items():
                if k in ("metadata", "history"):
                    continue
                out.update(flat(v, f"{prefix}{k}."))
        else:
            out[prefix.rstrip(".")] = d
        return out

    cur_f = flat((current or {}).get("config", current or {}))
    new_f = flat((new or {}).get("config", new or {}))
    t = Table("setting", "promoted now", "candidate", box=None, pad_edge=False)
    for k in sorted(set(cur_f) | set(new_f)):
        a, b = cur_f.get(k, "—"), new_f.get(k, "—")
        style = "bold yellow" if a != b else "dim"
        t.add_row(k, json.dumps(a) if a != "—" else a, json.dumps(b) if b != "—" else b, style=style)
    return t


class CompareScreen(ModeScreen):
    MODE: ClassVar[str] = "compare"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort_next", "Sort", id="compare-sort"),
        Binding("o", "flip_order", "Order", id="compare-order"),
        Binding("p", "promote", "Promote", id="compare-promote"),
        Binding("w", "winners_only", "Winners", id="compare-winners"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.winners_only = False

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
        data = await self.services.screen_data()
        self.rows = {comparison_key(r): r for r in data.comparisons}
        self._render_rows()

    def _render_rows(self) -> None:
        shown = {k: comparison_cells(r) for k, r in self.rows.items() if r.get("winner") or not self.winners_only}
        self.table.sync(shown)
        detail = self.query_one("#compare-detail", Static)
        if not self.rows:
            detail.update("No comparisons yet: after train + validate, press r and queue a compare job "
                          "(or a pipeline). Sort: s / click a header.")
        else:
            order = "desc" if self.table.sort_reverse else "asc"
            detail.update(f"{len(shown)} rows · sorted by {self.table.sort_column or '—'} ({order}) · "
                          "★ = winner · p = promote the highlighted row's pick")

    def action_sort_next(self) -> None:
        cur = self.table.sort_column
        nxt = SORTABLE[(SORTABLE.index(cur) + 1) % len(SORTABLE)] if cur in SORTABLE else "mae_pct"
        self.table.sort_by(nxt, reverse=False)
        self._render_rows()

    def action_flip_order(self) -> None:
        self.table.sort_by(self.table.sort_column or "mae_pct", reverse=not self.table.sort_reverse)
        self._render_rows()

    def action_winners_only(self) -> None:
        self.winners_only = not self.winners_only
        self._render_rows()

    def action_promote(self) -> None:
        key = self.table.current_id
        row = self.rows.get(key or "")
        if row is None:
            self.notify("no comparison row selected", severity="warning")
            return
        model = str(row.get("model"))
        if model not in FOUNDATION_MODELS:
            self.notify(f"{model} is a reference row (no config to promote): highlight a model's row, e.g. the ★ winner",
                        severity="warning")
            return
        self.fc_app.confirm_promote(str(row.get("model")), str(row.get("symbol")), on_done=self.reload)

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Promote highlighted comparison", "Write hyperparams/<model>/<SYMBOL>.json", self.action_promote)
        yield ("Sort comparisons by next column", "Cycle the sort column", self.action_sort_next)
        yield ("Show winners only", "Toggle winner filter", self.action_winners_only)


def promotion_body(model: str, symbol: str, current: dict[str, Any] | None, new: dict[str, Any] | None) -> Group:
    head = Text.assemble(("Promote ", ""), (f"{model}", "bold"), (" for ", ""), (symbol, "bold"),
                         ("\nwrites ", "dim"), (f"hyperparams/{model}/{symbol}.json", "cyan"))
    if new is None:
        return Group(head, Text("\nNo pick stored for this model and symbol: nothing to promote.", style="red"))
    note = Text("\nnothing promoted yet" if current is None else "\nchanges against the promoted config:",
                style="dim")
    return Group(head, note, diff_table(current, new))

