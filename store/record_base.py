"""What every typed record is built from: the base model and its error, `parse`, and the field
types several records share (metrics, window specs, span bounds, naive scores, the decision key,
write stamps). The records themselves are store/records.py.

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


def finite_or_none(v: Any) -> Any:
    """NaN/inf are 'not defined' (None), the same as JSON's view of them."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    item = getattr(v, "item", None)  # numpy scalars
    if callable(item) and not isinstance(v, int | float | str | bool):
        try:
            return finite_or_none(item())
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
            data = {k: finite_or_none(v) for k, v in data.items()}
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


def symbol_field(v: Any) -> str:
    """A record's symbol field, checked like every symbol."""
    return validate_symbol(v)


def _check_name(v: Any) -> str:
    """Comparison rows and baselines name more than models (`ensemble_top2`, `naive_drift`)."""
    if not isinstance(v, str) or not v.strip():
        raise ValueError("model must be a non-empty name")
    return v.strip().lower()


def model_field(v: Any) -> str:
    """A record's model field where it names a forecaster (picks, regressions)."""
    return validate_model(v)


class DecisionKey(Record):
    """(symbol, horizon, model, preset): what one decision is about."""

    KIND: ClassVar[str] = "decision"
    symbol: str
    horizon: int = Field(ge=1)
    model: str
    preset: str = DEFAULT_PRESET

    _sym = field_validator("symbol", mode="before")(classmethod(lambda cls, v: symbol_field(v)))
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
    "DEFAULT_PRESET", "METRIC_NAMES", "NAIVE_METHODS", "DecisionKey", "Metrics", "NaiveScores", "Record",
    "RecordError", "Span", "SpanBounds", "Stamped", "WindowSpec", "finite_or_none", "model_field", "parse", "parse_all",
    "symbol_field",
]
