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

Imports pydantic, the standard library and the pure name validators of `engine.symbols` /
`engine.models` (the store depends on nothing else of ours).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.models import validate_model
from engine.symbols import validate_symbol

Span = Literal["train", "val", "test", "pretest"]
NAIVE_METHODS: tuple[str, ...] = ("persistence", "drift", "seasonal")
DEFAULT_PRESET = "tiny"


class RecordError(ValueError):
    """A record that does not match its model; the message names the record and the field."""


def _finite(v: Any) -> Any:
    """NaN/inf are 'not defined' (None), the same as JSON's view of them."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item) and not isinstance(v, int | float | str | bool):
        try:
            return _finite(item())
        except (TypeError, ValueError):
            return v
    return v


class Record(BaseModel):
    """Base: unknown fields are refused (a misspelt metric is an error, not a silent new column)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, ser_json_inf_nan="null")
    KIND: ClassVar[str] = "record"

    def label(self) -> str:
        """How error messages name this record (overridden with the record's key)."""
        return self.KIND

    def to_doc(self) -> dict[str, Any]:
        """Plain JSON for the store (None for undefined numbers)."""
        return self.model_dump(mode="json")


class Metrics(Record):
    """Forecast metrics on one set of windows (definitions: engine/metrics.py).

    `dm_*` compare this forecast with naive persistence on the same windows: `dm_stat` < 0 means the
    model had the smaller loss; `dm_p_two_sided` tests equal accuracy; `dm_p_better` is the one-sided
    p-value of "model better than naive" (small = significantly better). Any value may be None
    (undefined, e.g. DM with too few windows).
    """

    KIND: ClassVar[str] = "metrics"
    mae: float | None = None
    mae_pct: float | None = None
    return_mae: float | None = None
    rmse: float | None = None
    mase: float | None = None
    crps: float | None = None
    coverage80: float | None = None
    dm_stat: float | None = None
    dm_p_two_sided: float | None = None
    dm_p_better: float | None = None
    latency_per_forecast_s: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _clean(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = {k: _finite(v) for k, v in data.items()}
            # engine.metrics.evaluate names the two-sided p `dm_pvalue` until it reports direction
            # (issue 12); that one producer is translated here, nowhere else.
            if "dm_pvalue" in data and "dm_p_two_sided" not in data:
                data["dm_p_two_sided"] = data.pop("dm_pvalue")
            stat, p2 = data.get("dm_stat"), data.get("dm_p_two_sided")
            if data.get("dm_p_better") is None and isinstance(stat, int | float) and isinstance(p2, int | float):
                # the t distribution is symmetric: one-sided p of "model better" (stat < 0) from the two-sided
                data["dm_p_better"] = p2 / 2.0 if stat < 0 else 1.0 - p2 / 2.0
        return data

    def get(self, name: str) -> float | None:
        """A metric by name (`mae_pct`, or `val_mae_pct`-style names without their prefix)."""
        if name not in type(self).model_fields:
            raise RecordError(f"unknown metric {name!r}; metrics are: {', '.join(type(self).model_fields)}")
        return getattr(self, name)


METRIC_NAMES: tuple[str, ...] = tuple(Metrics.model_fields)


class WindowSpec(Record):
    """Which walk-forward windows a number was computed on: span, how many, how far apart, and how
    many of the span's rows their targets cover. Two numbers are comparable only when their window
    specs (and horizon) are equal."""

    KIND: ClassVar[str] = "window spec"
    span: Span
    count: int = Field(ge=0)
    stride: int = Field(ge=1)
    rows_covered: int = Field(ge=0)
    first_origin: int | None = None
    last_origin: int | None = None
    span_rows: int | None = None  # rows in the span, so rows_covered / span_rows is the share scored

    @classmethod
    def from_origins(cls, span: str, origins: Iterable[int], horizon: int) -> WindowSpec:
        """Build from the windows' origins (row of each window's first target) and the horizon."""
        o = sorted(int(x) for x in origins)
        if not o:
            return cls(span=span, count=0, stride=1, rows_covered=0)
        stride = min((b - a for a, b in zip(o, o[1:], strict=False)), default=max(1, int(horizon)))
        covered = 0
        end = -1
        for start in o:  # union of [origin, origin + horizon)
            lo = max(start, end)
            hi = start + int(horizon)
            if hi > lo:
                covered += hi - lo
            end = max(end, hi)
        return cls(span=span, count=len(o), stride=max(1, stride), rows_covered=covered,
                   first_origin=o[0], last_origin=o[-1])

    def short(self) -> str:
        """Screen label, e.g. "test 1247w"."""
        return f"{self.span} {self.count}w"


class SpanBounds(Record):
    """Train/validation/test boundaries (engine.data.Spans.to_dict(); its derived
    `train`/`val`/`test` ranges are dropped, they follow from these three)."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)
    KIND: ClassVar[str] = "spans"
    n_rows: int = Field(ge=0)
    train_end: int = Field(ge=0)
    val_end: int = Field(ge=0)


class NaiveScores(Record):
    """Naive persistence on exactly the windows of the record it belongs to."""

    KIND: ClassVar[str] = "naive scores"
    method: str | None = None  # naive's variant chosen on validation (the DM reference)
    validation: Metrics = Field(default_factory=Metrics)
    test: Metrics = Field(default_factory=Metrics)


def _check_symbol(v: Any) -> str:
    return validate_symbol(v)


def _check_name(v: Any) -> str:
    """Comparison rows and baselines name more than models (`ensemble_top2`, `naive_drift`)."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError("model must be a non-empty name")
    return v.strip().lower()


def _check_model(v: Any) -> str:
    return validate_model(v)


class DecisionKey(Record):
    """(symbol, horizon, model, preset): what one decision is about."""

    KIND: ClassVar[str] = "decision"
    symbol: str
    horizon: int = Field(ge=1)
    model: str
    preset: str = DEFAULT_PRESET

    _sym = field_validator("symbol", mode="before")(classmethod(lambda cls, v: _check_symbol(v)))
    _mod = field_validator("model", mode="before")(classmethod(lambda cls, v: _check_name(v)))

    def label(self) -> str:
        return f"{self.model}/{self.symbol} h={self.horizon} ({self.preset})"

    def key(self) -> tuple[str, int, str, str]:
        return (self.symbol, self.horizon, self.model, self.preset)


class Stamped(Record):
    """Set by the store when it writes the record."""

    updated_at: float | None = None
    updated_iso: str | None = None
    job_id: str | None = None


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

    _sym = field_validator("symbol", mode="before")(classmethod(lambda cls, v: _check_symbol(v)))

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
        return {k: _finite(x) for k, x in v.items()} if isinstance(v, Mapping) else v

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

    _pmod = field_validator("model", mode="after")(classmethod(lambda cls, v: _check_model(v)))

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

    _sym = field_validator("symbol", mode="before")(classmethod(lambda cls, v: _check_symbol(v)))
    _mod = field_validator("model", mode="before")(classmethod(lambda cls, v: _check_model(v)))

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


R = TypeVar("R", bound=Record)


def _first_error(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(record)"
        parts.append(f"{loc}: {e.get('msg')}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _name(cls: type[Record], data: Any) -> str:
    if isinstance(data, Mapping):
        bits = [str(data[k]) for k in ("model", "symbol") if isinstance(data.get(k), str)]
        if data.get("run_id"):
            bits = [str(data["run_id"])]
        h = data.get("horizon")
        if h is not None:
            bits.append(f"h={h}")
        if bits:
            return f"{cls.KIND} {'/'.join(bits[:2])}{(' ' + ' '.join(bits[2:])) if bits[2:] else ''}"
    return cls.KIND


def parse(cls: type[R], data: Any, where: str = "") -> R:
    """Validate one record; RecordError names the record (kind + key) and the bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        at = f" in {where}" if where else ""
        raise RecordError(f"{_name(cls, data)}{at} is invalid: {_first_error(exc)}") from None


def parse_all(cls: type[R], rows: Iterable[Any], where: str = "") -> list[R]:
    if isinstance(rows, Mapping) or isinstance(rows, str | bytes):
        raise RecordError(f"{where or cls.KIND + 's'} must be a list of {cls.KIND}s")
    return [parse(cls, r, f"{where}[{i}]" if where else "") for i, r in enumerate(rows)]


__all__ = [
    "METRIC_NAMES", "NAIVE_METHODS", "BaselineRow", "Calibration", "ComparisonRow", "DecisionKey", "Metrics",
    "NaiveScores", "Pick", "Promotion", "Record", "RecordError", "RegressionRow", "RunRecord", "SpanBounds",
    "TopConfig", "WindowSpec", "parse", "parse_all",
]
