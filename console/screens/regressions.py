"""Regressions screen: symbols whose tuned model got worse than before (or than naive), with deltas.

Why it reads two sources: the store's `regressions` table when the engine records one, else the
regression task's `reports/regression.json`. A key queues the proposed retrain jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from console.screens.base import ModeScreen
from console.services import metric_of
from console.widgets.table import Cell, KeyedTable, num, txt

COLUMNS = (
    ("flag", "!"), ("symbol", "Symbol"), ("model", "Model"), ("metric", "Metric"), ("before", "Before"),
    ("after", "After"), ("delta", "Δ"), ("delta_pct", "Δ%"), ("action", "Proposed"),
)


def regression_key(row: dict[str, Any]) -> str:
    return f"{row.get('symbol')}|{row.get('model')}|{row.get('horizon', '')}"


def is_flagged(row: dict[str, Any]) -> bool:
    for k in ("flagged", "regressed", "flag"):
        if k in row:
            return bool(row[k])
    d = metric_of(row, "delta")
    return d is not None and d > 0


def regression_cells(row: dict[str, Any]) -> dict[str, Cell]:
    flagged = is_flagged(row)
    before = metric_of(row, "before", "previous", "old")
    after = metric_of(row, "after", "current", "new")
    delta = metric_of(row, "delta")
    if delta is None and before is not None and after is not None:
        delta = after - before
    dpct = metric_of(row, "delta_pct")
    if dpct is None and delta is not None and before:
        dpct = delta / abs(before) * 100
    worse = "red" if delta is not None and delta > 0 else "green"
    proposed = row.get("proposed") or row.get("recommendation") or ("retrain" if flagged else "")
    if isinstance(proposed, dict):
        proposed = proposed.get("kind", "retrain")
    return {
        "flag": Cell(flagged, "⚠" if flagged else "", style="bold red"),
        "symbol": txt(row.get("symbol"), style="bold" if flagged else ""),
        "model": txt(row.get("model")),
        "metric": txt(row.get("metric", "mae_pct")),
        "before": num(before),
        "after": num(after),
        "delta": num(delta, "{:+.2f}", style=worse),
        "delta_pct": num(dpct, "{:+.1f}", style=worse),
        "action": txt(proposed),
    }


class RegressionsScreen(ModeScreen):
    MODE: ClassVar[str] = "regressions"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "queue_retrain", "Retrain flagged", id="regress-retrain"),
        Binding("s", "sort_delta", "Sort Δ", id="regress-sort"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="regress-table")
        yield Static("", id="regress-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="regress-load")
    async def _load(self) -> None:
        data = await self.services.screen_data()
        self.rows = {regression_key(r): r for r in data.regressions}
        table = self.query_one(KeyedTable)
        table.sync({k: regression_cells(r) for k, r in self.rows.items()})
        flagged = sum(is_flagged(r) for r in self.rows.values())
        self.query_one("#regress-detail", Static).update(
            f"{flagged} flagged of {len(self.rows)} · t queues a train job for each flagged row"
            if self.rows else "No regression report yet: run a regression job (forecast-console regression)."
        )

    def flagged_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if is_flagged(r)]

    def action_sort_delta(self) -> None:
        self.query_one(KeyedTable).sort_by("delta", reverse=True)

    def action_queue_retrain(self) -> None:
        rows = self.flagged_rows()
        if not rows:
            self.notify("no flagged rows to retrain", severity="warning")
            return
        n = 0
        for r in rows:
            model = r.get("model")
            if not model or model == "naive":
                continue
            proposed = r.get("proposed") if isinstance(r.get("proposed"), dict) else {}
            params = dict(proposed.get("params") or {})
            if self.fc_app.queue_jobs("train", [str(r["symbol"])], str(model), params, quiet=True):
                n += 1
        self.notify(f"queued {n} retrain job(s)")

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Queue retrain for flagged regressions", "One train job per flagged row", self.action_queue_retrain)
