"""Configs screen: the current best pick per model × symbol, promotion history, rollback.

Why beside each other: a promotion is only meaningful against what is live; the history shows
who replaced what, and rollback restores the previous promoted file (store.rollback).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from console.screens.base import ModeScreen
from console.services import _pick_score
from console.widgets.table import Cell, KeyedTable, num, txt

PICK_COLUMNS = (("model", "Model"), ("symbol", "Symbol"), ("metric", "Chosen on"), ("score", "Val"),
                ("test", "Test"), ("promoted", "Promoted"))
PROMO_COLUMNS = (("when", "When"), ("action", "Action"), ("model", "Model"), ("symbol", "Symbol"),
                 ("by", "By"), ("source", "Source"))


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
        Binding("tab", "app.focus_next", "Next table", id="configs-next", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.picks: dict[str, dict[str, Any]] = {}

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
        data = await self.services.screen_data()
        promoted: dict[tuple[str, str], dict[str, Any]] = {}
        for p in sorted(data.promotions, key=lambda r: r.get("at") or r.get("when") or r.get("t") or 0):
            promoted[(str(p.get("model")), str(p.get("symbol")))] = p
        self.picks = {f"{p.get('model')}|{p.get('symbol')}": p for p in data.picks}
        rows = {}
        for key, p in self.picks.items():
            live = promoted.get((str(p.get("model")), str(p.get("symbol"))))
            live_action = (live or {}).get("action", "promote")
            is_live = live is not None and live_action != "rollback"
            test = p.get("test") if isinstance(p.get("test"), dict) else {}
            metric = p.get("selection_metric") or "mae_pct"
            rows[key] = {
                "model": txt(p.get("model")), "symbol": txt(p.get("symbol"), style="bold"),
                "metric": txt(metric), "score": num(_pick_score(p)),
                "test": num(test.get(metric) if isinstance(test.get(metric), int | float) else test.get("mae_pct")),
                "promoted": Cell(is_live, "yes" if is_live else "", style="green"),
            }
        self.query_one("#picks-table", KeyedTable).sync(rows)
        hist = {}
        for i, pr in enumerate(data.promotions):
            hist[str(pr.get("id", i))] = {
                "when": fmt_when(pr.get("at") or pr.get("when") or pr.get("t")),
                "action": txt(pr.get("action", "promote")), "model": txt(pr.get("model")),
                "symbol": txt(pr.get("symbol")), "by": txt(pr.get("by") or "—"),
                "source": txt(pr.get("source") or "—"),
            }
        self.query_one("#promos-table", KeyedTable).sync(hist)
        self.query_one("#configs-detail", Static).update(
            "No picks yet: run validate/compare/sweep jobs." if not self.picks
            else "p promote highlighted pick · b roll back its promotion · Tab switches table"
        )

    def _current_pick(self) -> dict[str, Any] | None:
        key = self.query_one("#picks-table", KeyedTable).current_id
        pick = self.picks.get(key or "")
        if pick is None:
            self.notify("no pick selected", severity="warning")
        return pick

    def action_promote(self) -> None:
        p = self._current_pick()
        if p:
            self.fc_app.confirm_promote(str(p["model"]), str(p["symbol"]), on_done=self.reload)

    def action_rollback(self) -> None:
        p = self._current_pick()
        if p:
            self.fc_app.confirm_rollback(str(p["model"]), str(p["symbol"]), on_done=self.reload)

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Promote highlighted pick", "Write its hyperparams JSON", self.action_promote)
        yield ("Roll back highlighted promotion", "Restore the previously promoted JSON", self.action_rollback)
