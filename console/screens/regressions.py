"""Regressions screen: each pick's latest regression check (current vs previous pick vs naive).

Why it reads the store: the engine records the regression task's `regressions` rows
(engine/tasks/regression.py) in the store's `regressions` table, one row per (model, symbol,
metric), so the screen shows the latest verdict without parsing report files. A flagged row
carries `proposed_jobs` (a retrain then a re-validate, as JobSpec dicts); `t` queues them as ONE
pipeline job with explicit steps (engine/tasks/pipeline.py), so the engine runs the re-validate only
after the retrain succeeded, and the chain completes after the console quits or the engine service
restarts. The pipeline's id is recorded on the row (`follow_up`, through the engine service), and its
name is derived from the verdict, so `t` again — now or after a restart — queues nothing while that
job is queued, running or done; a failed/cancelled/interrupted one is resubmitted under the same
name, which resumes it (steps that succeeded are not redone). A new check replaces the row and with
it the follow-up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from console.messages import QueueJobRequested
from console.screens.base import ModeScreen, read_for
from console.state_style import STATE_STYLE
from console.widgets.table import Cell, KeyedTable, counted_cell, num, txt
from engine.state import Status

COLUMNS = (
    ("flag", "!"), ("symbol", "Symbol"), ("horizon", "H"), ("model", "Model"), ("metric", "Val metric"),
    ("current", "Now"), ("previous", "Prev"), ("baseline", "Naive"), ("d_prev", "Δprev%"), ("d_base", "Δnaive%"),
    ("test", "Test now/naive"), ("action", "Proposed"),
)


def regression_key(row: dict[str, Any]) -> str:
    """Same identity as the store's upsert key: one row per (model, symbol, metric)."""
    return f"{row.get('model')}|{row.get('symbol')}|{row.get('metric')}"


def is_flagged(row: dict[str, Any]) -> bool:
    return bool(row.get("flagged"))


def _f(row: dict[str, Any], name: str) -> float | None:
    v = row.get(name)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def window_count(w: Any) -> int | None:
    """A row's window spec (a WindowSpec document, or a bare count in older rows) → how many windows."""
    if isinstance(w, dict):
        w = w.get("count")
    return w if isinstance(w, int) and not isinstance(w, bool) else None


def proposal_label(row: dict[str, Any]) -> str:
    jobs = row.get("proposed_jobs") or []
    if jobs:
        return " → ".join(str(j.get("kind", "?")) for j in jobs if isinstance(j, dict))
    reason = str(row.get("reason") or "")
    return "error" if reason.startswith("could not evaluate") else "—"


#: States of a follow-up job that mean "the proposal is being (or was) carried out": `t` queues nothing.
CARRIED: frozenset[str] = frozenset({Status.QUEUED, Status.RUNNING, Status.SUCCEEDED})


def follow_up_params(row: dict[str, Any]) -> tuple[list[str], dict[str, Any]] | None:
    """(symbols, pipeline params) that carry out a row's proposed jobs in order, or None without any.
    The name is derived from the verdict (the check's job, model, symbol, metric and the steps)."""
    jobs = [j for j in row.get("proposed_jobs") or [] if isinstance(j, dict)]
    if not jobs:
        return None
    steps = [{"kind": j.get("kind"), "model": j.get("model"), "params": dict(j.get("params") or {})} for j in jobs]
    symbols = sorted({str(s) for j in jobs for s in j.get("symbols") or []})
    key = json.dumps([row.get("job_id"), row.get("model"), row.get("symbol"), row.get("metric"), steps],
                     sort_keys=True, default=str)
    name = f"regress-{row.get('model')}-{row.get('symbol')}-{hashlib.sha1(key.encode()).hexdigest()[:8]}".lower()
    return symbols, {"steps": steps, "name": name}


def regression_cells(row: dict[str, Any], follow_up_state: str | None = None) -> dict[str, Cell]:
    """Cells from one row in the regression task's format (positive Δ% = worse than the reference)."""
    flagged = is_flagged(row)
    d_prev, d_base = _f(row, "delta_vs_previous_pct"), _f(row, "delta_vs_baseline_pct")

    def worse(d: float | None, bad: bool) -> str:
        return "bold red" if bad else ("green" if d is not None and d <= 0 else "")

    return {
        "flag": Cell(flagged, "⚠" if flagged else "", style="bold red"),
        "symbol": txt(row.get("symbol"), style="bold" if flagged else ""),
        "model": txt(row.get("model")),
        "horizon": num(row.get("horizon") if isinstance(row.get("horizon"), int) else None, "{:d}"),
        "metric": txt(row.get("metric", "mae_pct")),
        "current": counted_cell(_f(row, "current"), window_count(row.get("windows"))),
        "previous": num(_f(row, "previous"), "{:.3f}"),
        "baseline": num(_f(row, "baseline"), "{:.3f}"),
        "d_prev": num(d_prev, "{:+.1f}", style=worse(d_prev, bool(row.get("worse_than_previous")))),
        "d_base": num(d_base, "{:+.1f}", style=worse(d_base, bool(row.get("worse_than_baseline")))),
        # shown beside the flag, never acted on: the proposal reads validation only
        "test": _test_cell(row),
        "action": txt(proposal_label(row) + (f" · {follow_up_state}" if follow_up_state else ""),
                      style=STATE_STYLE[Status.SUCCEEDED] if follow_up_state == Status.SUCCEEDED
                      else ("yellow" if flagged else "dim")),
    }


def _test_cell(row: dict[str, Any]) -> Cell:
    cur, base = _f(row, "test_current"), _f(row, "test_baseline")
    if cur is None:
        return Cell(None, "—", style="dim", justify="right")
    n = window_count(row.get("test_windows"))
    text = f"{cur:.3f}/{'—' if base is None else f'{base:.3f}'}" + (f" {n}w" if n is not None else "")
    return Cell(cur, text, style="dim", justify="right")


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
        #: row key -> the follow-up job queued from this screen (before the store's row says so)
        self.queued: dict[str, str] = {}

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
            data = await read_for(self, self.services.screen_data())
        except Exception as exc:  # noqa: BLE001 - show and keep the screen alive
            self.notify_error(exc)
            return
        docs = [r.to_doc() for r in data.regressions]  # RegressionRow fields, validated on read
        self.rows = {regression_key(r): r for r in docs}
        self.pick_symbols = sorted({p.symbol for p in data.picks})
        self.queued = {k: v for k, v in self.queued.items() if k in self.rows and not self.rows[k].get("follow_up")}
        self._render_rows()

    def follow_up_of(self, key: str) -> tuple[str | None, str | None]:
        """(job id, state) of the follow-up carrying out row `key`'s proposal, if any."""
        jid = self.queued.get(key) or (self.rows.get(key) or {}).get("follow_up")
        if not jid:
            return None, None
        js = self.services.job(jid)
        return jid, (js.state if js is not None else None)

    def _render_rows(self) -> None:
        self.table.sync({k: regression_cells(r, self.follow_up_of(k)[1]) for k, r in self.rows.items()})
        self._update_detail()


    def _update_detail(self) -> None:
        detail = self.query_one("#regress-detail", Static)
        if self.rows:
            flagged = sum(is_flagged(r) for r in self.rows.values())
            cur = self.rows.get(self.table.current_id or "")
            why = f" · {cur.get('symbol')} {cur.get('model')}: {cur.get('reason', '')}" if cur else ""
            detail.update(f"{flagged} flagged of {len(self.rows)} · flags and proposals read validation; test is "
                          f"shown, never acted on · Δ% > 0 is worse · c check again · t queue proposed jobs{why}")
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
        self.post_message(QueueJobRequested("regression", symbols, params={"preset": "tiny"}))

    def action_queue_retrain(self) -> None:
        """Queue the proposal of the highlighted row if it is flagged, else of every flagged row: one
        pipeline job per row (retrain, then re-validate), unless one already carries it out."""
        cur_key = self.table.current_id or ""
        cur = self.rows.get(cur_key)
        keys = [cur_key] if cur is not None and is_flagged(cur) else [regression_key(r) for r in self.flagged_rows()]
        keys = [k for k in keys if self.rows[k].get("proposed_jobs")]
        if not keys:
            self.notify("no flagged row with a proposal: nothing to queue", severity="warning")
            return
        queued, carried = [], []
        for k in keys:
            jid, state = self.follow_up_of(k)
            if jid and state in CARRIED:
                carried.append(f"{self.rows[k].get('model')}/{self.rows[k].get('symbol')}: {jid} {state}")
                continue
            job_id = self._queue_follow_up(k)
            if job_id:
                queued.append(job_id)
        if carried:
            self.notify("already carried out, not queued again: " + "; ".join(carried) +
                        " (c checks again)", severity="warning", timeout=8)
        if queued:
            self.notify(f"queued {len(queued)} retrain → re-validate pipeline(s): {', '.join(queued)}")
        self._render_rows()

    def _queue_follow_up(self, key: str) -> str | None:
        row = self.rows[key]
        made = follow_up_params(row)
        if made is None:
            return None
        symbols, params = made
        try:
            priority = max(int(j.get("priority") or 0) for j in row["proposed_jobs"] if isinstance(j, dict))
            spec = self.services.make_spec("pipeline", symbols, None, params, priority)
            self.services.submit(spec)
        except (RuntimeError, ValueError) as exc:  # an invalid spec, or no engine service to queue on
            self.notify(str(exc), title="not queued", severity="error", timeout=8)
            return None
        self.queued[key] = spec.id
        self._record(row, spec.id)
        return str(spec.id)

    @work(group="regress-record")
    async def _record(self, row: dict[str, Any], job_id: str) -> None:
        try:
            await self.services.record_follow_up(str(row.get("model")), str(row.get("symbol")),
                                                 str(row.get("metric", "mae_pct")), job_id)
        except Exception as exc:  # noqa: BLE001 - the job runs anyway; only the record is missing
            self.notify(f"{job_id} queued, but recording it on the row failed: {exc}", severity="warning")

    def palette_commands(self) -> Iterable[tuple[str, str, Any]]:
        yield ("Run a regression check", "Queue a regression job for the picked symbols", self.action_run_check)
        yield ("Queue proposed retrains", "Retrain (then re-validate) flagged regressions", self.action_queue_retrain)
