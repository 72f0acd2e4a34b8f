"""Typed records: what the decision store holds and every screen, report and command reads.

Why pydantic models rather than dicts: a dict crossing a boundary invites readers to guess its
shape (`dm_pvalue` or `dm_p`? flat metrics or nested?), and each guess that differs is a number
shown under the wrong label. Here each record has one model, each metric one field name, and a
record is validated when it is written (a task's payload, before anything is stored) and when it is
read (a hand-edited store with a wrong type is an error naming the record, not a traceback deep in
`report` or a screen).

The identity of a decision is (symbol, horizon, model, preset) plus the adapter it uses
(`DecisionKey`): picks and comparison rows carry all four, so nothing ranks numbers made at
different horizons or on different window sets together.

The base model, `parse` and the field types the records share are store/record_base.py (re-exported
here: `from store.records import Metrics, parse` is the public spelling).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from store.record_base import (
    DEFAULT_PRESET,
    METRIC_NAMES,
    NAIVE_METHODS,
    DecisionKey,
    Metrics,
    NaiveScores,
    Record,
    RecordError,
    Span,
    SpanBounds,
    Stamped,
    WindowSpec,
    finite_or_none,
    model_field,
    parse,
    parse_all,
    symbol_field,
)

# ------------------------------------------------------------------------------------------------
# the records


class BaselineRow(Stamped):
    """Naive method on one span of one symbol at one horizon (engine.tasks.baseline)."""

    KIND: ClassVar[str] = "baseline row"
    symbol: str
    model: str  # naive_persistence | naive_drift | naive_seasonal
    horizon: int = Field(ge=1)
    span: Span
    n_windows: int | None = Field(default=None, ge=0)
    n_rows: int | None = None
    context_len: int | None = None
    stride: int = Field(default=1, ge=1)
    spans: SpanBounds | None = None
    windows: WindowSpec | None = None
    target_start: str | None = None
    target_end: str | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    error: str | None = None
    tier: str | None = None
    tier_horizon: int | None = None
    tier_span: str | None = None
    tier_mae_pct: float | None = None
    tier_windows: int | None = Field(default=None, ge=0)  # the windows tier_mae_pct pools (train+val for pretest)
    tier_error: str | None = None
    season: int | None = None  # naive_seasonal's period (5 business days, 7 calendar days)

    _sym = field_validator("symbol", mode="before")(classmethod(lambda cls, v: symbol_field(v)))

    def label(self) -> str:
        return f"baseline {self.model}/{self.symbol} h={self.horizon} {self.span}"


class RunRecord(Record):
    """A tracked run (train, validate, sweep trial): hyperparameters, metrics, checkpoint, provenance.

    Metric names carry their span as a prefix (`val_mae_pct`, `test_crps`); values are numbers,
    flags (stopped_early) or None."""

    KIND: ClassVar[str] = "run"
    run_id: str
    model: str
    symbol: str
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float | bool | None] = Field(default_factory=dict)
    checkpoint: str | None = None
    training_time: float | None = Field(default=None, ge=0)
    notes: str = ""
    seed: int | None = None
    job_id: str | None = None
    git_commit: str | None = None
    env: str | None = None
    created_at: float
    created: str
    extra: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str | None] | None = None  # filled on read from the envs table

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, v: Any) -> Any:
        return {k: finite_or_none(x) for k, x in v.items()} if isinstance(v, Mapping) else v

    def label(self) -> str:
        return f"run {self.run_id}"


class TopConfig(Record):
    """One of a pick's best validation configs (for the detail view)."""

    KIND: ClassVar[str] = "top config"
    config: dict[str, Any]
    value: float | None = None


class Calibration(Record):
    KIND: ClassVar[str] = "calibration verdict"
    verdict: str
    test_before: float | None = None


class Pick(DecisionKey, Stamped):
    """The config chosen for one decision on validation, reported on test (validate/calibrate/sweep).

    `adapter` is the fine-tuned adapter folder it was chosen with (None: base weights or naive);
    promotion copies it beside the promoted file."""

    KIND: ClassVar[str] = "pick"
    config: dict[str, Any]
    selection_metric: str = "mae_pct"
    selection_span: Literal["val", "val+test veto"] = "val"
    validation: Metrics = Field(default_factory=Metrics)
    test: Metrics = Field(default_factory=Metrics)
    naive: NaiveScores = Field(default_factory=NaiveScores)
    beats_naive: bool | None = None  # one-sided DM on validation below the threshold (engine.evaluation)
    decision_note: str | None = None
    context: int | None = None
    spans: SpanBounds | None = None
    val_windows: WindowSpec | None = None
    test_windows: WindowSpec | None = None
    source_run: str | None = None
    adapter: str | None = None
    weights: dict[str, str] | None = None  # pretrained base weights scored on: {source, tokenizer} (hub id or folder)
    candidates: int | None = None
    model_calls: int | None = None
    search_s: float | None = None
    top: list[TopConfig] = Field(default_factory=list)
    calibrated: Calibration | None = None
    seed: int = 0
    set_at: float | None = None
    set_iso: str | None = None

    _pmod = field_validator("model", mode="after")(classmethod(lambda cls, v: model_field(v)))

    @model_validator(mode="after")
    def _naive_method(self) -> Pick:
        if self.model == "naive" and self.config.get("method", "persistence") not in NAIVE_METHODS:
            raise ValueError(f"naive config method must be one of {', '.join(NAIVE_METHODS)}")
        return self

    def score(self) -> float | None:
        """The validation number the pick was chosen on."""
        return self.validation.get(self.selection_metric.removeprefix("val_"))


class ComparisonRow(DecisionKey, Stamped):
    """One model (or naive, or an ensemble) in a comparison at one horizon on shared windows.

    The winner is chosen on `validation`; `test` is reported. `windows`/`val_windows` say which
    windows; `improvement_vs_naive_pct` is on test, positive = lower error than naive."""

    KIND: ClassVar[str] = "comparison row"
    validation: Metrics = Field(default_factory=Metrics)
    test: Metrics = Field(default_factory=Metrics)
    windows: WindowSpec | None = None  # the test windows (the reported numbers)
    val_windows: WindowSpec | None = None
    context: int | None = None
    spans: SpanBounds | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    source: Literal["pick", "default", "ensemble", "selected on val"] = "default"  # naive: its variant chosen on val
    source_run: str | None = None
    adapter: str | None = None
    weights: dict[str, str] | None = None  # pretrained base weights scored on: {source, tokenizer} (hub id or folder)
    seed: int = 0
    winner: bool = False
    runner_up: bool = False
    selection_metric: str = "mae_pct"
    selected_on: Literal["val"] = "val"
    improvement_vs_naive_pct: float | None = None
    improvement_vs_runner_up_pct: float | None = None
    latency_s: float | None = None
    decision_note: str | None = None  # why the winner is what it is (e.g. "naive: not significantly better")
    dm_alpha: float | None = None  # the one-sided DM threshold the decision used

    def label(self) -> str:
        return f"comparison {self.model}/{self.symbol} h={self.horizon}"

    def promotable(self) -> bool:
        """An ensemble has no single config trading code could run."""
        return self.source != "ensemble"


class RegressionRow(Stamped):
    """Monitoring: current pick vs previous pick vs naive on the same windows (engine.tasks.regression)."""

    KIND: ClassVar[str] = "regression row"
    symbol: str
    model: str
    metric: str
    horizon: int | None = None
    span: Span | None = None
    current: float | None = None
    previous: float | None = None
    baseline: float | None = None
    delta_vs_previous_pct: float | None = None
    delta_vs_baseline_pct: float | None = None
    worse_than_previous: bool = False
    worse_than_baseline: bool = False
    flagged: bool = False
    threshold_pct: float | None = None
    reason: str = ""
    current_config: dict[str, Any] | None = None
    previous_config: dict[str, Any] | None = None
    windows: WindowSpec | int | None = None  # the validation windows the flag was read from
    test_current: float | None = None  # shown beside the flag, never acted on
    test_previous: float | None = None
    test_baseline: float | None = None
    test_windows: WindowSpec | None = None
    proposed_jobs: list[dict[str, Any]] = Field(default_factory=list)
    follow_up: str | None = None  # pipeline/job id that carries out the proposed retrain chain

    _sym = field_validator("symbol", mode="before")(classmethod(lambda cls, v: symbol_field(v)))
    _mod = field_validator("model", mode="before")(classmethod(lambda cls, v: model_field(v)))

    def label(self) -> str:
        return f"regression {self.model}/{self.symbol} {self.metric}"


class Promotion(Record):
    """One entry of the promotion audit. `intent` is written before the file, `promote`/`rollback`
    after it. An intent without its completion is a crash; the next writer settles it from what the
    file holds: the intended bytes → the completion (`recovered`), anything else → `abandoned`."""

    KIND: ClassVar[str] = "promotion"
    action: Literal["intent", "promote", "rollback", "abandoned"]
    op: Literal["promote", "rollback"] | None = None  # for intents: what is about to happen
    intent_id: str | None = None
    model: str
    symbol: str
    path: str
    horizon: int | None = None
    source: str | None = None
    run_id: str | None = None
    by: str | None = None
    at: float
    at_iso: str
    content: dict[str, Any] | None = None
    replaced: dict[str, Any] | None = None
    undoes_at: float | None = None
    content_sha256: str | None = None  # of the bytes written (None: the file was removed)
    recovered: bool = False  # completed after a crash, from what the file holds

    def label(self) -> str:
        return f"promotion {self.action} {self.model}/{self.symbol} at {self.at_iso}"


__all__ = [
    "DEFAULT_PRESET", "METRIC_NAMES", "NAIVE_METHODS", "BaselineRow", "Calibration", "ComparisonRow", "DecisionKey",
    "Metrics", "NaiveScores", "Pick", "Promotion", "Record", "RecordError", "RegressionRow", "RunRecord", "Span",
    "SpanBounds", "Stamped", "TopConfig", "WindowSpec", "parse", "parse_all",
]
