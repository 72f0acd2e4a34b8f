"""Start-runs form: kind, model, priority and every parameter of the kind → a validated JobSpec.

Why generated: the fields are the kind's parameter model (engine.param_fields.fields), so every
setting a job reads is editable here and a new parameter appears without touching this screen. Each
field is checked as it is parsed (its type, choices and bounds), and JobSpec.create is the final gate
(unknown symbol, bad model…); its message is shown inline and nothing is queued until it passes.
Empty fields are not sent: the task's default (shown as the placeholder) or the planner applies. The
planner's per-symbol settings are shown and fill the placeholders of the fields they decide.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.models import FOUNDATION_MODELS
from engine.param_fields import ParamField, fields
from engine.task_params import PARAMS

FORM_KINDS: tuple[str, ...] = tuple(PARAMS)
#: What each kind does and what comes next: a new user picks a kind from this, not from the code.
KIND_HELP: dict[str, str] = {
    "baseline": "Naive forecasts: fills Tier and Naive MAE% on Stocks. Fast; run it first.",
    "train": "Fine-tune the model on each symbol (tiny preset: a few minutes on CPU). Next: validate.",
    "validate": "Pick forecast settings for a trained model on the validation windows. Next: compare.",
    "compare": "Every model with a pick vs naive on the test windows → Compare screen (4). Model ignored.",
    "sweep": "Hyperparameter search: many train jobs for the model (slow on CPU).",
    "calibrate": "Fit a scale/bias correction of the model's pick on validation; kept only if it helps.",
    "regression": "Re-check every pick vs its previous pick and naive → Regressions screen (5). Model ignored.",
    "pipeline": "baseline → train → validate → compare → regression in one job (slow on CPU).",
}
#: Kinds whose empty fields take the planner's per-symbol values (the others use their task's defaults).
PLANNED_KINDS: frozenset[str] = frozenset({"train", "sweep", "pipeline"})
#: What the Model cell says for the kinds that take no model (the select is hidden, not just disabled:
#: a field that looks editable but is skipped by Tab sends the next keys to the wrong field).
MODEL_FREE_NOTE: dict[str, str] = {
    "baseline": "— (naive baselines only)",
    "compare": "— (every model with a pick)",
    "regression": "— (every model with a pick)",
    # its `models` field names them (a Model select beside it looked like the one it would train)
    "pipeline": "— (models field below)",
}
#: Kinds that work over all models (or naive only): the model field is ignored for them.
MODEL_FREE_KINDS: frozenset[str] = frozenset(MODEL_FREE_NOTE)
#: Planner keys that decide a form field when it is left empty.
PLANNED_FIELDS: dict[str, tuple[str, ...]] = {
    "horizon": ("horizon",), "context": ("context",), "epochs": ("epochs",), "lr": ("lr",),
    "lora_rank": ("lora_rank",), "loss": ("loss",), "batch_size": ("batch_size",), "finetune": ("finetune",),
}
FORM_HINT = "ctrl+s queue · esc cancel · tab next field · enter opens a list"


def plan_summary(plan: dict[str, Any]) -> str:
    """One line per symbol, so the form fits 80×24: the fields an operator may want to edit."""
    tier = str(plan.get("difficulty", "?"))
    parts = [tier if plan.get("tier_known", True) else f"tier unknown — run a baseline · as {tier}"]
    for key, label in (("context", "ctx"), ("horizon", "h"), ("loss", ""), ("lora_rank", "r"),
                       ("lr", "lr"), ("epochs", "ep")):
        v = plan.get(key)
        if v is None:
            continue
        v = f"{v:.0e}" if isinstance(v, float) and v < 0.01 else v
        parts.append(f"{label} {v}" if label else str(v))
    return " · ".join(parts)


def _placeholder(f: ParamField) -> str:
    if f.default is None or f.default == []:
        return "default"
    return " ".join(map(str, f.default)) if isinstance(f.default, list) else str(f.default)


def field_widget(f: ParamField) -> Widget:
    """The input for one parameter: a list for choices, a checkbox for a flag, else a text field."""
    wid = f"run-{f.name}"
    if f.value_type is bool and not f.many:
        return Checkbox(value=bool(f.default), id=wid, compact=True, tooltip=f.help)
    if f.choices is not None and not f.many:
        blank = f.default is None
        return Select([(c, c) for c in f.choices], value=Select.NULL if blank else str(f.default),
                      allow_blank=blank, prompt="default", id=wid, compact=True, tooltip=f.help)
    return Input("", placeholder=_placeholder(f), id=wid, compact=True, tooltip=f.help)


class StartRunScreen(ModalScreen[Any]):
    """Dismisses with a JobSpec (validated) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="run-cancel"),
        Binding("ctrl+s", "submit", "Queue", id="run-submit"),
    ]

    def __init__(self, symbols: list[str], kind: str | None = None) -> None:
        super().__init__()
        self.symbols = symbols
        self.initial_kind = kind if kind in FORM_KINDS else "baseline"
        self._shown_kind: str | None = None

    def compose(self) -> ComposeResult:
        syms = ", ".join(self.symbols[:8]) + (f" … (+{len(self.symbols) - 8})" if len(self.symbols) > 8 else "")
        with Vertical(classes="dialog", id="run-dialog") as box:
            box.border_title = "Start runs"
            yield Static(f"Symbols: {syms or '(none selected — pick some on the Stocks screen)'}",
                         id="run-symbols")
            with Grid(id="run-head", classes="run-grid"):
                yield Label("Kind")
                yield Select([(k, k) for k in FORM_KINDS], value=self.initial_kind, allow_blank=False,
                             id="run-kind", compact=True)
                yield Label("Model")
                with Container(id="run-model-cell"):
                    yield Select([(m, m) for m in FOUNDATION_MODELS], value="toto", allow_blank=True,
                                 id="run-model", compact=True)
                    yield Static("", id="run-model-note")
                yield Label("Priority")
                yield Input("0", id="run-priority", compact=True)
            # Not a Tab stop of its own: an invisible stop took the keys meant for the next field
            # (focusing a field scrolls it into view anyway).
            with VerticalScroll(id="run-params-box", can_focus=False):
                yield Grid(*self._param_widgets(self.initial_kind), id="run-params", classes="run-grid")
            yield Static(KIND_HELP[self.initial_kind], id="run-help", classes="plan")
            yield Static("", id="run-plan", classes="plan")
            yield Static("", id="run-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Queue", variant="primary", id="run-ok", compact=True)
                yield Button("Cancel", id="run-no", compact=True)
            yield Static(FORM_HINT, id="run-hint", classes="hint")

    def _param_widgets(self, kind: str) -> list[Widget]:
        self._shown_kind = kind
        out: list[Widget] = []
        for f in self.param_fields(kind):
            out += [Label(f.name, classes="param-label"), field_widget(f)]
        return out

    @staticmethod
    def param_fields(kind: str) -> list[ParamField]:
        """The parameters the form shows for `kind`: all of its model's, but the internal hooks."""
        return [f for f in fields(kind) if not f.hidden]

    def on_mount(self) -> None:
        self.query_one("#run-kind", Select).focus()
        self._after_kind()

    def _kind(self) -> str:
        return str(self.query_one("#run-kind", Select).value)

    @property
    def chosen_kind(self) -> str:
        """The kind the form shows now (what the next form opens on)."""
        return self._shown_kind or self.initial_kind

    @on(Select.Changed, "#run-kind")
    async def _kind_changed(self) -> None:
        kind = self._kind()
        if kind != self._shown_kind:
            grid = self.query_one("#run-params", Grid)
            await grid.remove_children()
            await grid.mount_all(self._param_widgets(kind))
        self._after_kind()

    def _after_kind(self) -> None:
        kind = self._kind()
        free = kind in MODEL_FREE_KINDS
        select = self.query_one("#run-model", Select)
        select.disabled = free
        select.display = not free
        note = self.query_one("#run-model-note", Static)
        note.display = free
        note.update(MODEL_FREE_NOTE.get(kind, ""))
        self.query_one("#run-help", Static).update(KIND_HELP.get(kind, ""))
        self._show_plan()

    def _model(self) -> str | None:
        v = self.query_one("#run-model", Select).value
        return None if v is Select.NULL else str(v)

    def _preset(self) -> str:
        found = self.query("#run-preset")
        v = found.first(Select).value if found else "tiny"
        return "tiny" if v is Select.NULL else str(v)

    @on(Select.Changed, "#run-model")
    @on(Select.Changed, "#run-preset")
    def _model_changed(self) -> None:
        self._show_plan()

    @on(Input.Changed, "#run-horizon")
    def _horizon_changed(self) -> None:
        if self._kind() in PLANNED_KINDS:
            self._show_plan()

    def _job_horizon(self, kind: str, typed: Any = None) -> int | None:
        """The horizon a `kind` job will train at: typed (or `typed`; read by the field's own rule, as
        `build_params` reads it), else the kind's default; None when neither says (train: the planner's)."""
        field = next((f for f in self.param_fields(kind) if f.name == "horizon"), None)
        if field is None:
            return None
        if typed is None:
            found = self.query("#run-horizon")
            raw = found.first(Input).value if found and isinstance(found.first(), Input) else ""
            with contextlib.suppress(ValueError):  # not a horizon (yet): the default plans meanwhile
                typed = field.convert(raw) if raw.strip() else None
        if typed is None:
            typed = field.default
        return typed if isinstance(typed, int) else None

    def _plan_for(self, kind: str, symbol: str, model: str | None, horizon: int | None) -> dict[str, Any] | None:
        """What the empty fields of a `kind` job get for `symbol`: the planner's settings at the job's
        horizon, and for a tiny pipeline its own short training (PipelineParams.TINY_TRAIN) over them:
        what the job will run, not what a train job at the planner's horizon would."""
        from engine.task_params import PipelineParams

        plan = self.app.services.plan(symbol, model or "toto", self._preset(), horizon)  # type: ignore[attr-defined]
        if plan and "error" not in plan and kind == "pipeline" and self._preset() == "tiny":
            plan = {**plan, **{k: v for k, v in PipelineParams.TINY_TRAIN.items() if k in plan}}
        return plan

    def _show_plan(self) -> None:
        """Planner settings per symbol; the first symbol's values fill the placeholders of empty fields."""
        model = self._model()
        kind = self._kind()
        horizon = self._job_horizon(kind)
        lines: list[str] = []
        first: dict[str, Any] | None = None
        for sym in self.symbols[:4]:
            plan = self._plan_for(kind, sym, model, horizon)
            if plan is None:
                lines.append(f"{sym}: planner not available")
                continue
            if "error" in plan:
                lines.append(f"{sym}: {plan['error']}")
                continue
            first = first or plan
            lines.append(f"{sym}: {plan_summary(plan)}")
        if len(self.symbols) > 4:
            lines.append(f"… and {len(self.symbols) - 4} more (each gets its own plan)")
        planned = kind in PLANNED_KINDS
        head = ("Planner (empty fields use these):" if planned
                else "Planner (used by train; empty fields here take this kind's defaults):")
        self.query_one("#run-plan", Static).update(head + "\n" + ("\n".join(lines) if lines else "no symbols"))
        if not (first and planned):
            return
        for f in self.param_fields(kind):
            keys = PLANNED_FIELDS.get(f.name)
            val = next((first[k] for k in keys or () if first.get(k) is not None), None)
            found = self.query(f"#run-{f.name}")
            if val is not None and found and isinstance(found.first(), Input) and f.default is None:
                found.first(Input).placeholder = f"planner: {val}"

    def build_params(self, kind: str | None = None) -> tuple[dict[str, Any], int]:
        """The parameters typed into the form (empty fields left out); ValueError names the one that is wrong."""
        params: dict[str, Any] = {}
        for f in self.param_fields(kind or self._kind()):
            found = self.query(f"#run-{f.name}")
            if not found:
                continue
            w = found.first()
            if isinstance(w, Checkbox):
                if w.value != bool(f.default):
                    params[f.name] = bool(w.value)
            elif isinstance(w, Select):
                if w.value is not Select.NULL:
                    params[f.name] = f.convert(str(w.value))
            elif isinstance(w, Input) and w.value.strip():
                params[f.name] = f.convert(w.value)
        raw_pri = self.query_one("#run-priority", Input).value.strip() or "0"
        try:
            priority = int(raw_pri)
        except ValueError:
            raise ValueError(f"priority must be a whole number, got {raw_pri!r}") from None
        return params, priority

    def check_fits(self, kind: str, model: str | None, params: dict[str, Any]) -> None:
        """Refuse settings that cannot fit a selected symbol's rows, before anything is queued: the
        engine's one rule (engine.data.windows.check_fits, as train's CLI preflight), with the typed
        horizon/context, else the kind's defaults, else (train, sweep, pipeline) the planner's.
        Kinds whose horizon comes from the pick are checked when a horizon is typed. ValueError
        names the symbol, its rows and what does not fit."""
        from engine.data import DataError
        from engine.data.windows import check_fits

        defaults = {f.name: f.default for f in self.param_fields(kind)}
        if "horizon" not in defaults:
            return
        svc = self.app.services  # type: ignore[attr-defined]
        planned = kind in PLANNED_KINDS
        job_horizon = self._job_horizon(kind, params.get("horizon"))
        for sym in self.symbols:
            row = svc.stock_row(sym)
            if row is None:
                continue
            plan = self._plan_for(kind, sym, model, job_horizon) if planned else None
            plan = plan if plan and "error" not in plan else {}
            horizon = params.get("horizon", defaults["horizon"]) or plan.get("horizon")
            context = params.get("context", defaults.get("context")) or plan.get("context") or 0
            if horizon is None:
                continue
            for h in horizon if isinstance(horizon, list) else [horizon]:
                try:
                    check_fits(row.rows, int(h), int(context), val_rows=params.get("val_rows"),
                               test_rows=params.get("test_rows"),
                               spans=("train", "val") if planned else ("val", "test"),
                               stride=int(params.get("stride") or 1))
                except (DataError, ValueError) as exc:
                    why = exc.reason if isinstance(exc, DataError) else str(exc)
                    raise ValueError(f"{sym} ({row.rows} rows): {why}") from None

    def action_submit(self) -> None:
        err = self.query_one("#run-error", Static)
        kind = self._kind()
        model = self._model()
        if kind in MODEL_FREE_KINDS:
            model = None
        try:
            params, priority = self.build_params(kind)
            self.check_fits(kind, model, params)
            spec = self.app.services.make_spec(kind, self.symbols, model, params, priority)  # type: ignore[attr-defined]
        except ValueError as exc:
            err.update(f"✗ {exc}")
            return
        err.update("")
        self.dismiss(spec)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run-ok":
            self.action_submit()
        else:
            self.dismiss(None)
