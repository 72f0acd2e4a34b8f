"""Forecast view: one model's forecasts against the actuals, window by window, on the validation and
test windows of the job that scored them, with the 10–90 % band, naive overlaid and the origin marked.

Why it reads files and runs nothing: validate and compare keep the per-window forecasts they
scored (`store.forecasts`, written by `engine.forecast_record`), so the picture is the one the
numbers were computed from and opening it costs a file read, not a model load. Which file: the
job that made the row the user came from (a comparison row's or pick's job, a run's job or the
jobs of the decisions that use it); when that job kept none (it ran before forecasts were kept),
the newest file for the symbol and horizon that holds the model, and the title names that job.

Keys: ←/→ window, PgUp/PgDn ten windows, Home/End first/last, t validation/test, m next model in
the file, Esc back. The title says span, window i/n, origin, horizon, model/preset and job, and
the line below gives this window's MAE% (engine.metrics) beside naive's and the span's recorded
MAE% with its window count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from console.messages import ForecastRequested
from console.screens.base import read_for
from console.widgets.forecast_chart import ForecastChart
from store.workspace import Workspace

if TYPE_CHECKING:
    from store.forecasts import WindowForecasts

SPAN_NAMES = {"val": "validation", "test": "test"}


@dataclass
class Found:
    forecasts: WindowForecasts | None
    note: str  # why this file, or why none


def _candidates(ws: Workspace, symbol: str, horizon: int | None, job_id: str) -> list[Path]:
    d = ws.forecasts_dir / job_id
    if horizon is not None:
        return [ws.forecast_file(job_id, symbol, horizon)]
    return sorted(d.glob(f"{symbol}-h*.npz"))


def find_forecasts(workspace: Path, symbol: str, model: str, horizon: int | None, preset: str | None,
                   job_ids: Sequence[str]) -> Found:
    """The forecasts of `model` for `symbol` at `horizon`: from the given jobs first, else the newest."""
    from store.forecasts import ForecastFileError, read_forecasts  # numpy: only once the view opens

    ws = Workspace(workspace)
    errors: list[str] = []

    def usable(path: Path) -> WindowForecasts | None:
        try:
            f = read_forecasts(path)
        except ForecastFileError as exc:
            if path.exists():
                errors.append(str(exc))
            return None
        return f if f.meta.model_index(model, preset) is not None or f.meta.model_index(model) is not None else None

    for jid in job_ids:
        for p in _candidates(ws, symbol, horizon, jid):
            if (f := usable(p)) is not None:
                return Found(f, f"forecasts kept by job {jid} ({f.meta.job_kind})")
    pattern = f"*/{symbol}-h{horizon}.npz" if horizon is not None else f"*/{symbol}-h*.npz"
    files = sorted(ws.forecasts_dir.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True) \
        if ws.forecasts_dir.is_dir() else []
    for p in files:
        if (f := usable(p)) is not None:
            why = (f"job {', '.join(job_ids)} kept no forecasts; " if job_ids else "") + \
                f"newest kept for {symbol}: job {f.meta.job_id} ({f.meta.job_kind})"
            return Found(f, why)
    at = f" at h={horizon}" if horizon is not None else ""
    why = (f"No per-window forecasts of {model} for {symbol}{at}: validate or compare it (r on Stocks) — "
           "those jobs keep the forecasts they score; jobs from before this version kept none.")
    return Found(None, why + (f" Unreadable: {errors[0]}" if errors else ""))


class ForecastScreen(Screen[None]):
    DEFAULT_CSS = """
    ForecastScreen #fv-title {
        height: auto;
        max-height: 2;
        padding: 0 1;
        text-style: bold;
    }
    ForecastScreen #fv-info {
        height: auto;
        max-height: 3;
        padding: 0 1;
        color: $text-muted;
        background: $boost;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "step(-1)", "Prev", key_display="←", id="fv-prev"),
        Binding("right", "step(1)", "Next", key_display="→", id="fv-next"),
        Binding("pageup", "step(-10)", "-10", show=False, id="fv-prev10"),
        Binding("pagedown", "step(10)", "+10", show=False, id="fv-next10"),
        Binding("home", "jump(0)", "First", show=False, id="fv-first"),
        Binding("end", "jump(-1)", "Last", show=False, id="fv-last"),
        Binding("t", "toggle_span", "Val/Test", id="fv-span"),
        Binding("m", "next_model", "Model", id="fv-model"),
        Binding("escape", "close", "Back", id="fv-back"),
    ]

    def __init__(self, request: ForecastRequested) -> None:
        super().__init__()
        self.request = request
        self.forecasts: WindowForecasts | None = None
        self.note = ""
        self.span = "test"
        self.index = 0
        self.model_index = 0
        self._loading = True
        #: Keys pressed while the forecasts load (`f t ←` typed fast): run, in order, once they are in.
        self._early: list[Callable[[], None]] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≈")
        yield Static("loading forecasts…", id="fv-title")
        yield ForecastChart(id="fv-chart")
        yield Static("", id="fv-info")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._load()

    @work(exclusive=True, group="forecast-load")
    async def _load(self) -> None:
        r = self.request
        svc = self.app.services  # type: ignore[attr-defined]
        try:
            found = await read_for(self, svc.call(find_forecasts, svc.workspace, r.symbol, r.model, r.horizon, r.preset,
                                                  r.job_ids))
        except Exception as exc:  # noqa: BLE001 - shown, the view stays open
            found = Found(None, f"could not read forecasts: {exc}")
        self.forecasts, self.note = found.forecasts, found.note
        if self.forecasts is not None:
            meta = self.forecasts.meta
            i = meta.model_index(r.model, r.preset)
            self.model_index = i if i is not None else (meta.model_index(r.model) or 0)
            self.index = self.forecasts.count(self.span) - 1  # the newest test window first
        self._loading = False
        self._draw()
        for action in self._early:
            action()
        self._early.clear()

    def _after_load(self, action: Callable[..., None], *args: Any) -> bool:
        """True while the forecasts load: the key's action is kept and runs once they are in."""
        if self._loading:
            self._early.append(partial(action, *args))
        return self._loading

    # ------------------------------------------------------------------ drawing
    def _draw(self) -> None:
        chart = self.query_one(ForecastChart)
        title = self.query_one("#fv-title", Static)
        info = self.query_one("#fv-info", Static)
        f = self.forecasts
        if f is None:
            title.update(f"{self.request.symbol} · {self.request.model} — no forecasts")
            chart.show(None, "no forecasts kept", "")
            info.update(self.note)
            return
        meta, n = f.meta, f.count(self.span)
        m = meta.models[self.model_index]
        label = m.name if m.preset == "tiny" else f"{m.name}·{m.preset}"
        spec = meta.windows[self.span]
        if n == 0:
            title.update(f"{meta.symbol} · {label} · h={meta.horizon} · {SPAN_NAMES[self.span]}: no windows")
            chart.show(None, "no windows on this span", label)
            info.update(self.note)
            return
        self.index = max(0, min(self.index, n - 1))
        w = f.window(self.span, self.index, self.model_index)
        if m.name == "naive":
            w.naive = None  # naive itself: no second naive line
        origin = str(w.times[meta.history])[:10]
        title.update(f"{meta.symbol} · {label} ({m.source or '?'}) · h={meta.horizon} · {SPAN_NAMES[self.span]} "
                     f"window {self.index + 1}/{n} ({spec.short()}, stride {spec.stride}) · origin {origin} "
                     f"(row {w.origin_row}) · context {meta.context}")
        chart.show(w, f"{meta.symbol} {SPAN_NAMES[self.span]} window {self.index + 1}/{n} · origin {origin}", label)
        info.update(self._info(f, w, label))

    def _info(self, f: WindowForecasts, w: Any, label: str) -> str:
        from engine.metrics import mae_pct

        meta = f.meta
        m = meta.models[self.model_index]
        y = w.actual[meta.history:]
        this = f"this window: {label} MAE% {mae_pct(y, w.point):.3f}"
        if w.naive is not None and m.name != "naive":
            this += f" vs naive ({meta.naive_method or '?'}) {mae_pct(y, w.naive):.3f}"
        rec = (m.validation if self.span == "val" else m.test).mae_pct
        span = meta.windows[self.span].short()
        whole = f"{span}: {label} MAE% {rec:.3f}" if rec is not None else f"{span}: MAE% —"
        naive_i = meta.model_index("naive")
        if naive_i is not None and m.name != "naive":
            nm = meta.models[naive_i]
            nrec = (nm.validation if self.span == "val" else nm.test).mae_pct
            if nrec is not None:
                whole += f" vs naive {nrec:.3f}"
        return f"{this} · {whole} · band = 10–90 % of the samples · {self.note}"

    # ------------------------------------------------------------------ keys
    def action_step(self, delta: int) -> None:
        if self._after_load(self.action_step, delta):
            return
        if self.forecasts is not None:
            self.index = max(0, min(self.index + delta, self.forecasts.count(self.span) - 1))
            self._draw()

    def action_jump(self, where: int) -> None:
        if self._after_load(self.action_jump, where):
            return
        if self.forecasts is not None:
            self.index = 0 if where == 0 else self.forecasts.count(self.span) - 1
            self._draw()

    def action_toggle_span(self) -> None:
        if self._after_load(self.action_toggle_span):
            return
        if self.forecasts is not None:
            self.span = "val" if self.span == "test" else "test"
            self.index = self.forecasts.count(self.span) - 1
            self._draw()

    def action_next_model(self) -> None:
        if self._after_load(self.action_next_model):
            return
        if self.forecasts is not None:
            self.model_index = (self.model_index + 1) % len(self.forecasts.meta.models)
            self._draw()

    def action_close(self) -> None:
        self.dismiss(None)
