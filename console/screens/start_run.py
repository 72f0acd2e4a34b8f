"""Start-runs form: kind, model, preset, horizon, epochs, context, priority → a validated JobSpec.

Why validate here: JobSpec.create is the single gate (unknown symbol, bad model, non-positive
horizon…); its message is shown inline and nothing is queued until it passes. The planner's
per-symbol settings are shown and pre-fill the editable fields.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.models import FOUNDATION_MODELS, PRESETS
from engine.task_params import accepted

FORM_KINDS: tuple[str, ...] = ("baseline", "train", "validate", "compare", "regression", "sweep", "pipeline")
#: Kinds that work over all models (or naive only): the model field is ignored for them.
MODEL_FREE_KINDS: frozenset[str] = frozenset({"baseline", "compare", "regression"})
INT_FIELDS: tuple[str, ...] = ("horizon", "epochs", "context")
#: What each kind does and what comes next: a new user picks a kind from this, not from the code.
KIND_HELP: dict[str, str] = {
    "baseline": "Naive forecasts: fills Tier and Naive MAE% on Stocks. Fast; run it first.",
    "train": "Fine-tune the model on each symbol (tiny preset: a few minutes on CPU). Next: validate.",
    "validate": "Pick forecast settings for a trained model on the validation windows. Next: compare.",
    "compare": "Every model with a pick vs naive on the test windows → Compare screen (4). Model ignored.",
    "regression": "Re-check every pick vs its previous pick and naive → Regressions screen (5). Model ignored.",
    "sweep": "Hyperparameter search: many train jobs for the model (slow on CPU).",
    "pipeline": "baseline → train → validate → compare → regression in one job (slow on CPU).",
}
#: Kinds whose empty fields take the planner's per-symbol values (the others use their task's defaults).
PLANNED_KINDS: frozenset[str] = frozenset({"train", "sweep", "pipeline"})
FORM_HINT = "ctrl+s queue · esc cancel · tab next field · enter opens a list"


def plan_summary(plan: dict[str, Any]) -> str:
    """One line per symbol, so the form fits 80×24: the fields an operator may want to edit."""
    parts = [str(plan.get("difficulty", "?"))]
    for key, label in (("context", "ctx"), ("horizon", "h"), ("loss", ""), ("lora_rank", "r"),
                       ("lr", "lr"), ("epochs", "ep")):
        v = plan.get(key)
        if v is None:
            continue
        v = f"{v:.0e}" if isinstance(v, float) and v < 0.01 else v
        parts.append(f"{label} {v}" if label else str(v))
    return " · ".join(parts)


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

    def compose(self) -> ComposeResult:
        syms = ", ".join(self.symbols[:8]) + (f" … (+{len(self.symbols) - 8})" if len(self.symbols) > 8 else "")
        with Vertical(classes="dialog", id="run-dialog") as box:
            box.border_title = "Start runs"
            yield Static(f"Symbols: {syms or '(none selected — pick some on the Stocks screen)'}",
                         id="run-symbols")
            with Grid(id="run-grid"):
                yield Label("Kind")
                yield Select([(k, k) for k in FORM_KINDS], value=self.initial_kind, allow_blank=False,
                             id="run-kind", compact=True)
                yield Label("Model")
                yield Select([(m, m) for m in FOUNDATION_MODELS], value="toto", allow_blank=True, id="run-model",
                             compact=True)
                yield Label("Preset")
                yield Select([(p, p) for p in PRESETS], value="tiny", allow_blank=False, id="run-preset",
                             compact=True)
                yield Label("Horizon")
                yield Input("", placeholder="planner", id="run-horizon", compact=True)
                yield Label("Context")
                yield Input("", placeholder="planner", id="run-context", compact=True)
                yield Label("Epochs")
                yield Input("", placeholder="planner", id="run-epochs", compact=True)
                yield Label("Priority")
                yield Input("0", id="run-priority", compact=True)
            yield Static(KIND_HELP[self.initial_kind], id="run-help", classes="plan")
            yield Static("", id="run-plan", classes="plan")
            yield Static("", id="run-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Queue", variant="primary", id="run-ok", compact=True)
                yield Button("Cancel", id="run-no", compact=True)
            yield Static(FORM_HINT, id="run-hint", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#run-kind", Select).focus()
        self._apply_kind()

    def _kind(self) -> str:
        return str(self.query_one("#run-kind", Select).value)

    @on(Select.Changed, "#run-kind")
    def _kind_changed(self) -> None:
        self._apply_kind()

    def _apply_kind(self) -> None:
        """Grey out the fields this kind does not read, so nothing typed there is silently dropped."""
        kind = self._kind()
        names = accepted(kind)
        self.query_one("#run-model", Select).disabled = kind in MODEL_FREE_KINDS
        self.query_one("#run-preset", Select).disabled = "preset" not in names
        for name in INT_FIELDS:
            self.query_one(f"#run-{name}", Input).disabled = name not in names
        self.query_one("#run-help", Static).update(KIND_HELP.get(kind, ""))
        self._show_plan()

    def _model(self) -> str | None:
        v = self.query_one("#run-model", Select).value
        return None if v is Select.BLANK else str(v)

    @on(Select.Changed, "#run-model")
    @on(Select.Changed, "#run-preset")
    def _model_changed(self) -> None:
        self._show_plan()

    def _show_plan(self) -> None:
        """Planner settings per symbol; the first symbol's values pre-fill empty fields."""
        model = self._model()
        lines: list[str] = []
        first: dict[str, Any] | None = None
        svc = self.app.services  # type: ignore[attr-defined]
        for sym in self.symbols[:4]:
            plan = svc.plan(sym, model or "toto", str(self.query_one("#run-preset", Select).value))
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
        planned = self._kind() in PLANNED_KINDS
        head = ("Planner (empty fields use these):" if planned
                else "Planner (used by train; empty fields here take this kind's defaults):")
        self.query_one("#run-plan", Static).update(head + "\n" + ("\n".join(lines) if lines else "no symbols"))
        for name in INT_FIELDS:
            self.query_one(f"#run-{name}", Input).placeholder = "planner" if planned else "default"
        if first and planned:
            for name, keys in (("horizon", ("horizon", "prediction_length", "pred_len")),
                               ("context", ("context", "context_length", "context_len")),
                               ("epochs", ("epochs",))):
                inp = self.query_one(f"#run-{name}", Input)
                val = next((first[k] for k in keys if k in first), None)
                if val is not None:
                    inp.placeholder = f"planner: {val}"

    def build_params(self, kind: str | None = None) -> tuple[dict[str, Any], int]:
        """Parse the fields the kind accepts (engine.task_params); ValueError names the field that is wrong."""
        names = accepted(kind or self._kind())
        params: dict[str, Any] = {}
        if "preset" in names:
            params["preset"] = str(self.query_one("#run-preset", Select).value)
        for name in INT_FIELDS:
            raw = self.query_one(f"#run-{name}", Input).value.strip()
            if not raw or name not in names:
                continue
            try:
                params[name] = int(raw)
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
        raw_pri = self.query_one("#run-priority", Input).value.strip() or "0"
        try:
            priority = int(raw_pri)
        except ValueError:
            raise ValueError(f"priority must be a whole number, got {raw_pri!r}") from None
        return params, priority

    def action_submit(self) -> None:
        err = self.query_one("#run-error", Static)
        kind = self._kind()
        model = self._model()
        if kind in MODEL_FREE_KINDS:
            model = None
        try:
            params, priority = self.build_params(kind)
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
