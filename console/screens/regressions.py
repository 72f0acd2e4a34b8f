"""Regressions screen: each pick's latest regression check (current vs previous pick vs naive).

Why it reads the store: the engine records the regression task's `regressions` rows
(engine/tasks/regression.py) in the store's `regressions` table, one row per (model, symbol,
metric), so the screen shows the latest verdict without parsing report files. A flagged row
carries `proposed_jobs` (a retrain then a re-validate, as JobSpec dicts); `t` queues them, the
re-validate only once the retrain has succeeded (the app chains it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from console.screens.base import ModeScreen
from console.widgets.table import Cell, KeyedTable, num, txt

COLUMNS = (
    ("flag", "!"), ("symbol", "Symbol"), ("model", "Model"), ("metric", "Metric"), ("current", "Now"),
    ("previous", "Prev"), ("baseline", "Naive"), ("d_prev", "Δprev%"), ("d_base", "Δnaive%"),
    ("action", "Proposed"),
)


def regression_key(row: dict[str, Any]) -> str:
    """Same identity as the store's upsert key: one row per (model, symbol, metric)."""
    return f"{row.get('model')}|{row.get('symbol')}|{row.get('metric')}"


def is_flagged(row: dict[str, Any]) -> bool:
    return bool(row.get("flagged"))


def _f(row: dict[str, Any], name: str) -> float | None:
    v = row.get(name)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def proposal_label(row: dict[str, Any]) -> str:
    jobs = row.get("proposed_jobs") or []
    if jobs:
        return " → ".join(str(j.get("kind", "?")) for j in jobs if isinstance(j, dict))
    reason = str(row.get("reason") or "")
    return "error" if reason.startswith("could not evaluate") else "—"


def regression_cells(row: dict[str, Any]) -> dict[str, Cell]:
    """Cells from one row in the regression task's format (positive Δ% = worse than the reference)."""
    flagged = is_flagged(row)
    d_prev, d_base = _f(row, "delta_vs_previous_pct"), _f(row, "delta_vs_baseline_pct")

    def worse(d: float | None, bad: bool) -> str:
        return "bold red" if bad else ("green" if d is not None and d <= 0 else "")

    return {
        "flag": Cell(flagged, "⚠" if flagged else "", style="bold red"),
        "symbol": txt(row.get("symbol"), style="bold" if flagged else ""),
        "model": txt(row.get("model")),
        "metric": txt(row.get("metric", "mae_pct")),
        "current": num(_f(row, "current")),
        "previous": num(_f(row, "previous")),
        "baseline": num(_f(row, "baseline")),
        "d_prev": num(d_prev, "{:+.1f}", style=worse(d_prev, bool(row.get("worse_than_previous")))),
        "d_base": num(d_base, "{:+.1f}", style=worse(d_base, bool(row.get("worse_than_baseline")))),
        "action": txt(proposal_label(row), style="yellow" if flagged else "dim"),
    }


class RegressionsScreen(ModeScreen):
    MODE: ClassVar[str] = "regressions"
    RELOAD_ON_FINISH: ClassVar[bool] = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "run_check", "Run check", id="regress-check"),
        Binding("t", "queue_retrain", "Queue proposed", id="regress-retrain"),
        Binding("s", "sort_delta", "Sort Δ", id="regress-sort"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.pick_symbols: list[str] = []

    def compose_body(self) -> ComposeResult:
        yield KeyedTable(COLUMNS, id="regress-table")
        yield Static("", id="regress-detail", classes="detail")

    def on_mount(self) -> None:
        self.query_one(KeyedTable).focus()
        self.reload()

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#regress-table", KeyedTable)

    def reload(self) -> None:
        self._load()

    @work(exclusive=True, group="regress-load")
    async def _load(self) -> None:
        try:
            data = await self.services.screen_data()
        except Exception as exc:  # noqa: BLE001 - show and keep the screen alive
            self.notify_error(exc)
            return
        docs = [r.to_doc() for r in data.regressions]  # RegressionRow fields, validated on read
        self.rows = {regression_key(r): r for r in docs}
        self.pick_symbols = sorted({p.symbol for p in data.picks})
        self.table.sync({k: regression_cells(r) for k, r in self.rows.items()})
        self._update_detail()

    def _update_detail(self) -> None:
        detail = self.query_one("#regress-detail", Static)
        if self.rows:
            flagged = sum(is_flagged(r) for r in self.rows.values())
            cur = self.rows.get(self.table.current_id or "")
            why = f" · {cur.get('symbol')} {cur.get('model')}: {cur.get('reason', '')}" if cur else ""
            detail.update(f"{flagged} flagged of {len(self.rows)} · Δ% > 0 is worse · c check again · "
                          f"t queue proposed jobs{why}")
        elif self.pick_symbols:
            detail.update(f"No regression check yet. Press c to check the picks of "
                          f"{', '.join(self.pick_symbols[:6])}{' …' if len(self.pick_symbols) > 6 else ''} "
                          "(current vs previous pick vs naive).")
        else:
            detail.update("No picks to check yet: train and validate a model first (Stocks → r), then press c here.")

    def on_data_table_row_highlighted(self) -> None:
        if self.rows:
            self._update_detail()

    def flagged_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if is_flagged(r)]

    def action_sort_delta(self) -> None:
        self.table.sort_by("d_prev", reverse=True)

    def action_run_check(self) -> None:
        """Queue a regression job over the selected symbols, else every symbol that has a pick."""
        symbols = [s for s in self.fc_app.selected_symbols if s in self.pick_symbols] or self.pick_symbols
        if not symbols:
            self.notify("no picks to check yet: train and validate a model first", severity="warning")
            return
        self.fc_app.queue_jobs("regression", symbols, None, {"preset": "tiny"})

    def action_queue_retrain(self) -> None:
        """Queue the proposals of the highlighted row if it is flagged, else of every flagged row."""
        cur = self.rows.get(self.table.current_id or "")
        rows = [cur] if cur is not None and is_flagged(cur) else self.flagged_rows()
        rows = [r for r in rows if r.get("proposed_jobs")]
        if not rows:
            self.notify("no flagged row with a proposal: nothing to queue", severity="warning")
            return
        n = sum(self.fc_app.queue_proposals(list(r["proposed_jobs"])) for r in rows)
        self.notify(f"queued {n} retrain job(s); each re-validate follows when its retrain succeeds")

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Run a regression check", "Queue a regression job for the picked symbols", self.action_run_check)
        yield ("Queue proposed retrains", "Retrain (then re-validate) flagged regressions", self.action_queue_retrain)
