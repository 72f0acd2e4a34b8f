"""Configs screen: the current pick per decision (model × symbol × horizon × preset), what is live,
the promotion history, rollback.

Why beside each other: a promotion is only meaningful against what is live. "Promoted" is read from
the live file itself (its model, preset, horizon and config equal the pick's), not from the audit,
so it stays true after a later validate (a new pick is not live) and after a rollback (the restored
file is). Rollback restores the previous promoted file (store.rollback).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from console.messages import ForecastRequested, PromoteRequested, RollbackRequested
from console.screens.base import ModeScreen, read_for
from console.screens.compare import mae_cell
from console.widgets.table import Cell, KeyedTable, num, txt
from console.words import model_label
from store.records import Pick

PICK_COLUMNS = (("model", "Model"), ("symbol", "Symbol"), ("horizon", "H"), ("metric", "Chosen on"),
                ("score", "Val"), ("test", "Test"), ("promoted", "Promoted"))
PROMO_COLUMNS = (("when", "When"), ("action", "Action"), ("model", "Model"), ("symbol", "Symbol"),
                 ("horizon", "H"), ("by", "By"), ("source", "Source"))


def pick_key(p: Pick) -> str:
    return f"{p.model}|{p.symbol}|{p.horizon}|{p.preset}"


def is_live(p: Pick, doc: dict[str, Any] | None) -> bool:
    """Does the live promoted file hold this pick's decision?"""
    if not isinstance(doc, dict) or "config" not in doc:
        return False
    h = doc.get("horizon") or (doc.get("windows") or {}).get("horizon")
    return (doc.get("model"), doc.get("preset"), h, doc.get("config")) == (p.model, p.preset, p.horizon, p.config)


#: Suffix of a naive reference row's id (the naive scores recorded with a model's pick).
NAIVE_REF = "|naive"


def naive_is_live(doc: dict[str, Any] | None, horizon: int, method: str | None) -> bool:
    """Does the live naive file for the symbol hold naive `method` at `horizon`?"""
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        return False
    h = doc.get("horizon") or (doc.get("windows") or {}).get("horizon")
    return h == horizon and doc["config"].get("method", "persistence") == (method or "persistence")


def naive_reference_cells(p: Pick, live_doc: dict[str, Any] | None) -> dict[str, Cell]:
    """The naive reference beside a model's pick: naive's variant chosen on validation, scored on the
    pick's own windows (what the pick had to beat), so a trader sees both numbers side by side."""
    live = naive_is_live(live_doc, p.horizon, p.naive.method)
    metric = p.selection_metric.removeprefix("val_")
    return {
        "model": txt(f"naive·{p.naive.method or 'persistence'}", style="dim"),
        "symbol": txt(p.symbol), "horizon": num(p.horizon, "{:d}"), "metric": txt(f"reference of {p.model}", style="dim"),
        "score": mae_cell(p.naive.validation.get(metric), p.val_windows, style="dim"),
        "test": mae_cell(p.naive.test.get(metric), p.test_windows, style="dim"),
        "promoted": Cell(live, "live" if live else "", style="green"),
    }


def fmt_when(ts: Any) -> Cell:
    """Timestamps come from the store (data, not the wall clock), shown in UTC for stable output."""
    if isinstance(ts, int | float):
        return Cell(float(ts), time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)))
    return txt(str(ts)[:16] if ts else "—")


class ConfigsScreen(ModeScreen):
    MODE: ClassVar[str] = "configs"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "promote", "Promote", id="configs-promote"),
        Binding("b", "rollback", "Rollback", id="configs-rollback"),
        Binding("f", "forecast", "Forecast", id="configs-forecast"),
        Binding("tab", "app.focus_next", "Next table", id="configs-next", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.picks: dict[str, Pick] = {}

    def compose_body(self) -> ComposeResult:
        yield Static("Best picks", classes="section")
        yield KeyedTable(PICK_COLUMNS, id="picks-table")
        yield Static("Promotion history", classes="section")
        yield KeyedTable(PROMO_COLUMNS, id="promos-table")
        yield Static("", id="configs-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one("#picks-table", KeyedTable).focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="configs-load")
    async def _load(self) -> None:
        data = await read_for(self, self.services.screen_data())
        self.picks = {pick_key(p): p for p in data.picks}
        rows = {}
        for key, p in self.picks.items():
            live = is_live(p, data.promoted.get((p.model, p.symbol)))
            rows[key] = {
                "model": txt(model_label(p.model, p.preset)),
                "symbol": txt(p.symbol, style="bold"), "horizon": num(p.horizon, "{:d}"),
                "metric": txt(p.selection_metric), "score": mae_cell(p.score(), p.val_windows),
                "test": mae_cell(p.test.get(p.selection_metric), p.test_windows),
                "promoted": Cell(live, "live" if live else "", style="green"),
            }
            if p.model != "naive" and p.naive.method:
                rows[key + NAIVE_REF] = naive_reference_cells(p, data.promoted.get(("naive", p.symbol)))
        self.query_one("#picks-table", KeyedTable).sync(rows)
        hist = {}
        for i, pr in enumerate(data.promotions):
            hist[str(i)] = {
                "when": fmt_when(pr.at), "action": txt(pr.action), "model": txt(pr.model),
                "symbol": txt(pr.symbol), "horizon": num(pr.horizon, "{:d}"), "by": txt(pr.by or "—"),
                "source": txt(pr.source or "—"),
            }
        self.query_one("#promos-table", KeyedTable).sync(hist)
        self.query_one("#configs-detail", Static).update(
            "No picks yet: run validate/compare/sweep jobs." if not self.picks
            else "p promote highlighted pick · b roll back its model's promotion · f forecasts · Tab switches table · "
                 "Val/Test: MAE% and window count · naive·… rows: naive on that pick's windows"
        )

    def _current_pick(self) -> Pick | None:
        key = self.query_one("#picks-table", KeyedTable).current_id or ""
        pick = self.picks.get(key)
        if pick is None and key.endswith(NAIVE_REF) and (ref := self.picks.get(key.removesuffix(NAIVE_REF))):
            self.notify(f"naive reference of the {ref.model} pick: to keep naive for {ref.symbol} h={ref.horizon}, "
                        "promote naive's row on Compare (or run validate naive)", severity="warning")
        elif pick is None:
            self.notify("no pick selected", severity="warning")
        return pick

    def action_promote(self) -> None:
        p = self._current_pick()
        if p:
            self.post_message(PromoteRequested(p.model, p.symbol, "pick", p.horizon, p.preset))

    def action_rollback(self) -> None:
        p = self._current_pick()
        if p:
            self.post_message(RollbackRequested(p.model, p.symbol))

    def action_forecast(self) -> None:
        p = self._current_pick()
        if p:
            self.post_message(ForecastRequested(p.symbol, p.model, p.horizon, p.preset, [p.job_id]))

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Forecast view of highlighted pick", "Its validation/test forecasts, window by window",
               self.action_forecast)
        yield ("Promote highlighted pick", "Write its hyperparams JSON", self.action_promote)
        yield ("Roll back highlighted promotion", "Restore the previously promoted JSON", self.action_rollback)
