"""The parameters each job kind accepts: one pydantic model per kind, the only declaration there is.

Why models: a spec's `params` is a plain JSON dict that crosses every boundary (CLI, console form,
spool, worker). Each kind's model says which names it reads, their types, bounds, defaults and help
text; `JobSpec.create`, the engine's spool intake and the tasks all validate through `parse`; the CLI
generates its flags and the console's start-run form its fields from the model, both through
`engine.param_fields`. Adding a field here reaches all of them.

Rules: `extra="forbid"` (a misspelled name is refused with a difflib "did you mean"), strict types (a
bool is not an int, "3" is not a number), and a JSON null means "the task's default" (null values are
dropped before validation, so the field's default applies). Defaults of `None` mean the task works the
value out itself (the planner, the trained run's horizon).

Pure module: pydantic and our plain validators only (no torch, no task imports), so the CLI, the
console and the engine can all afford it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.difficulty import DEFAULT_TIER_HORIZON, TIERS
from engine.models import FOUNDATION_MODELS, LOSSES, Loss, Preset, validate_model
from engine.names import validate_name

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
#: One-sided Diebold-Mariano p below which a model replaces naive (engine.evaluation applies it).
DmAlpha = Annotated[float, Field(gt=0, lt=1)] | None
DM_ALPHA_FIELD: Any = Field(None, description="a model replaces naive only when better on validation with "
                            "one-sided DM p below this (default 0.05)")
#: A name that becomes a file name (pipeline state, sweep study): engine.names' rule.
PathName = Annotated[str, AfterValidator(lambda v: validate_name("", v))]
#: A registered model's name (a typo is refused when the job is made, not when a step reaches it).
ModelName = Annotated[str, AfterValidator(validate_model)]


def _foundation(name: str) -> str:
    n = validate_model(name)
    if n not in FOUNDATION_MODELS:
        raise ValueError(f"{n!r} is not trained: choose from {', '.join(FOUNDATION_MODELS)} "
                         "(naive is in every comparison already)")
    return n


#: A model a pipeline trains and validates.
FoundationModelName = Annotated[str, AfterValidator(_foundation)]


class TaskParamError(ValueError):
    """A parameter the job kind does not read, or a value of the wrong type; the message says which."""


class Params(BaseModel):
    """What every kind accepts: the worker's scripted-task hook and `resume`."""

    # defer_build: the validators are built on first use, so importing this (every CLI start) stays cheap
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    #: The job kind these parameters belong to (its error messages start with it).
    KIND: ClassVar[str] = "job"
    #: Names a kind refuses with a reason of its own (not a typo: a setting that would be overridden).
    REFUSED: ClassVar[dict[str, str]] = {}

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        """These parameters validated from a spec's dict (defaults filled in), or TaskParamError."""
        given = {k: v for k, v in params.items() if v is not None}
        for name in given:
            why = cls.REFUSED.get(name)
            if why:
                raise TaskParamError(f"{cls.KIND}: {name} {why}")
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            raise TaskParamError(_message(cls, exc, given)) from None

    test_hook: dict[str, Any] | None = Field(
        None, alias="_test", description="scripted-task hook for the test suite (honoured only with "
        "FORECAST_TEST_HOOKS=1)")
    resume: bool = Field(False, description="continue from an interrupted attempt (a retry sets it)",
                         json_schema_extra={"hidden": True})


class SpanParams(Params):
    """Spans of the series: how many rows the validation and test spans hold."""

    val_rows: PosInt | None = Field(None, description="rows in the validation span (default: the split rule)")
    test_rows: PosInt | None = Field(None, description="rows in the test span (default: the split rule)")


class EvalParams(SpanParams):
    """Window settings shared by the evaluating kinds (engine.evaluation.build_setup)."""

    preset: Preset = Field("tiny", description="tiny = real architecture with small random weights (CPU, "
                           "seconds); pretrained = hub weights")
    horizon: PosInt | None = Field(None, description="forecast horizon in rows (default: the trained run's "
                                   "or the picks' horizon, else 16)")
    context: PosInt | None = Field(None, description="context rows (default: the model's preset context)")
    seed: NonNegInt = Field(0, description="random seed of sampling")
    val_windows: PosInt | None = Field(None, description="most validation windows per symbol (default: every "
                                       "origin up to 256, spread over the span)")
    test_windows: PosInt | None = Field(None, description="most test windows per symbol (default: every origin "
                                        "up to 256, spread over the span)")
    stride: PosInt | None = Field(None, description="smallest step between window origins in rows (default 1; "
                                  ">= horizon: no overlap, DM lags 0)")
    dayfirst: bool | None = Field(None, description="numeric dates are day/month/year (true) or month/day/year "
                                  "(false); default: decided from the file")
    source: str | None = Field(None, description="pretrained hub id or local weights directory (default: the "
                               "adapter's own, else the model's hub id)")
    tokenizer: str | None = Field(None, description="Kronos tokenizer hub id or directory (pretrained)")


class BaselineParams(SpanParams):
    """engine/tasks/baseline.py: naive forecasts, no model (so no preset)."""

    KIND: ClassVar[str] = "baseline"

    horizon: PosInt | list[PosInt] = Field([1, 16, 64], description="forecast horizon(s) in rows")
    span: Literal["test", "val"] = Field("test", description="span whose windows are scored")
    context: PosInt = Field(64, description="context rows per window")
    stride: PosInt = Field(1, description="rows between window origins")
    tier_horizon: PosInt = Field(DEFAULT_TIER_HORIZON, description="horizon at which the difficulty tier is measured")
    tier_span: Literal["pretest", "train", "val", "test"] = Field(
        "pretest", description="span whose windows measure the difficulty tier (pretest = train + val)")
    methods: list[Literal["persistence", "drift", "seasonal"]] = Field(
        ["persistence", "drift", "seasonal"], description="naive methods to score")


class TrainSettings(SpanParams):
    """Training settings a sweep passes unchanged to each trial's train job."""

    max_steps_per_epoch: PosInt | None = Field(None, description="cap on optimizer steps per epoch "
                                               "(default: whole epochs)")
    stride: PosInt = Field(1, description="rows between training window origins")
    mae_samples: PosInt = Field(8, description="samples per window for the validation MAE%")
    batch_size: PosInt | None = Field(None, description="windows per optimizer step (default: the plan's)")
    patience: PosInt = Field(3, description="epochs without validation improvement before stopping")
    finetune: Literal["lora", "full"] | None = Field(
        None, description="lora or full (default: lora for pretrained, full for tiny)")
    source: str | None = Field(None, description="pretrained hub id or local weights directory")
    tokenizer: str | None = Field(None, description="Kronos tokenizer hub id or directory (pretrained)")
    difficulty: str | None = Field(None, description="difficulty tier (default: measured on the train span); "
                                   "one of " + ", ".join(TIERS), json_schema_extra={"choices": list(TIERS)})

    @field_validator("difficulty")
    @classmethod
    def _tier(cls, v: str | None) -> str | None:
        if v is not None and v not in TIERS:
            raise ValueError(f"must be one of {', '.join(TIERS)}")
        return v


class TrainParams(TrainSettings):
    """engine/tasks/train.py: fine-tune one model per symbol."""

    KIND: ClassVar[str] = "train"

    preset: Preset = Field("tiny", description="tiny = real architecture with random weights (CPU); "
                           "pretrained = hub weights")
    epochs: PosInt | None = Field(None, description="training epochs (default: the plan's)")
    context: PosInt | None = Field(None, description="context rows (default: the plan's)")
    horizon: PosInt | None = Field(None, description="forecast horizon in rows (default: the plan's)")
    lr: float | None = Field(None, gt=0, lt=1, description="learning rate (default: the plan's)")
    lora_rank: PosInt | None = Field(None, description="LoRA rank (default: the plan's)")
    loss: Loss | None = Field(None, description="training loss (default: the plan's)")
    seed: NonNegInt = Field(0, description="random seed")
    resume: bool = Field(False, description="continue from the last checkpoint of the same configuration")


class ValidateParams(EvalParams):
    """engine/tasks/validate.py: the mode and the grid overrides of the model's search space."""

    KIND: ClassVar[str] = "validate"

    mode: Literal["quick", "full"] = Field("quick", description="grid size")
    selection_metric: str = Field("mae_pct", description="validation metric the winner is chosen on")
    dm_alpha: DmAlpha = DM_ALPHA_FIELD
    num_samples: PosInt | list[PosInt] | None = Field(None, description="sample counts to try")
    aggregations: str | list[str] | None = Field(None, description="sample aggregations to try")
    temperature: float | list[float] | None = Field(None, description="Kronos sampling temperatures to try")
    top_p: float | list[float] | None = Field(None, description="Kronos nucleus sampling p values to try")
    top_k: NonNegInt | list[NonNegInt] | None = Field(None, description="Kronos top-k values to try")
    max_context: PosInt | list[PosInt] | None = Field(None, description="Kronos context caps to try")
    clip: float | list[float] | None = Field(None, description="Kronos clip values to try")
    contexts: PosInt | list[PosInt] | None = Field(None, description="context lengths to try")
    methods: str | list[str] | None = Field(None, description="naive methods to try")


class CompareParams(EvalParams):
    """engine/tasks/compare.py: every picked model and naive on identical windows."""

    KIND: ClassVar[str] = "compare"

    selection_metric: str = Field("mae_pct", description="validation metric the winner is chosen on")
    top_k: NonNegInt = Field(2, description="members of the top-k ensemble row (0 = none)")
    dm_alpha: DmAlpha = DM_ALPHA_FIELD
    models: list[ModelName] | None = Field(None, description="models to compare (default: every model with a pick)")


class CalibrateParams(EvalParams):
    """engine/tasks/calibrate.py: affine correction fitted on validation."""

    KIND: ClassVar[str] = "calibrate"

    metric: str = Field("mae_pct", description="metric the calibration must improve")
    require_test_improvement: bool = Field(False, description="also drop the calibration when test gets worse")


class RegressionParams(EvalParams):
    """engine/tasks/regression.py: current pick vs previous pick vs naive."""

    KIND: ClassVar[str] = "regression"

    metric: str = Field("mae_pct", description="metric compared")
    span: Literal["val"] = Field("val", description="span whose windows flag a pick and propose retrains: "
                                 "validation only (test numbers are shown beside them, never acted on)")
    models: list[ModelName] | None = Field(None, description="models to check (default: every model with a pick)")
    threshold_pct: NonNegFloat = Field(5.0, description="flag when worse by more than this %")


class SweepParams(TrainSettings):
    """engine/tasks/sweep.py: the study settings plus train settings passed to every trial."""

    KIND: ClassVar[str] = "sweep"

    REFUSED: ClassVar[dict[str, str]] = {
        k: "is what the sweep searches; leave it out (or queue a single train job)"
        for k in ("lr", "lora_rank", "loss", "epoch_scale")}

    mode: Literal["priority", "quick", "full", "auto"] = Field(
        "priority", description="priority (research-backed configs), quick/full (grids), auto (TPE + pruning)")
    max_runs: PosInt | None = Field(None, description="most finished trials per study")
    preset: Preset = Field("tiny", description="tiny = random weights (CPU); pretrained = hub weights")
    horizon: PosInt = Field(16, description="forecast horizon in rows")
    context: PosInt | None = Field(None, description="context rows (default: the plan's)")
    epochs: PosInt = Field(2, description="base epochs per trial")
    seed: NonNegInt = Field(0, description="random seed of the sampler and the trials")
    gpus: NonNegFloat | None = Field(None, description="GPUs each trial asks for (default 1 with vram_gb, else 0)")
    vram_gb: NonNegFloat | None = Field(None, description="VRAM estimate of each trial in GB")
    name: PathName | None = Field(None, description="label of the sweep job")


class PipelineParams(Params):
    """engine/tasks/pipeline.py (`run`): baseline → train → validate → compare → regression → report."""

    KIND: ClassVar[str] = "pipeline"
    #: The tiny preset's training in a pipeline (for fields left empty): one short epoch at a short
    #: context, so the whole pipeline over the priority symbols runs in minutes on a CPU. Any other
    #: preset trains as a train job would (the planner's settings at the pipeline's horizon).
    TINY_TRAIN: ClassVar[dict[str, int]] = {"context": 64, "epochs": 1, "max_steps_per_epoch": 10}

    preset: Preset = Field("tiny", description="tiny = random weights (CPU); pretrained = hub weights")
    horizon: PosInt = Field(16, description="forecast horizon in rows")
    context: PosInt | None = Field(None, description="context rows (default: 64 for tiny, else the plan's)")
    models: list[FoundationModelName] | None = Field(None, description="foundation models (default: all)")
    epochs: PosInt | None = Field(None, description="training epochs (default: 1 short one for tiny, else the "
                                  "plan's)")
    mode: Literal["quick", "full"] = Field("quick", description="validation grid")
    val_windows: PosInt | None = Field(None, description="validation windows per symbol")
    test_windows: PosInt | None = Field(None, description="test windows per symbol")
    stride: PosInt | None = Field(None, description="smallest step between evaluation window origins")
    dayfirst: bool | None = Field(None, description="numeric dates are day/month/year (true) or month/day/year "
                                  "(false); default: decided from the file")
    name: PathName | None = Field(None, description="pipeline name (default derived from the request)")
    steps: list[dict[str, Any]] | None = Field(
        None, description="explicit steps, run in order over the job's symbols instead of the six stages: "
        "[{kind, model, params}] (a regression's retrain → re-validate chain)", json_schema_extra={"hidden": True})

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        """Each step is a job this pipeline will submit: its kind and params are checked now."""
        for i, st in enumerate(v or []):
            extra = set(st) - {"kind", "model", "params"}
            if extra:
                raise ValueError(f"step {i + 1}: unknown key(s) {', '.join(sorted(extra))} (kind, model, params)")
            kind = st.get("kind")
            if kind not in PARAMS or kind in ("pipeline", "sweep"):
                raise ValueError(f"step {i + 1}: kind must be one of "
                                 f"{', '.join(k for k in PARAMS if k not in ('pipeline', 'sweep'))}, got {kind!r}")
            if st.get("model") is not None and not isinstance(st.get("model"), str):
                raise ValueError(f"step {i + 1}: model must be a string")
            if not isinstance(st.get("params", {}), dict):
                raise ValueError(f"step {i + 1}: params must be an object")
            PARAMS[kind].of(st.get("params") or {})
        return v


#: Kind → its parameter model. The job kinds are exactly these keys (engine.jobs.KINDS).
PARAMS: dict[str, type[Params]] = {
    "baseline": BaselineParams, "train": TrainParams, "validate": ValidateParams, "compare": CompareParams,
    "sweep": SweepParams, "calibrate": CalibrateParams, "regression": RegressionParams,
    "pipeline": PipelineParams,
}


def model_for(kind: str) -> type[Params]:
    if kind not in PARAMS:
        raise TaskParamError(f"unknown job kind {kind!r}; choose one of: {', '.join(PARAMS)}")
    return PARAMS[kind]


def _names(model: type[Params]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def names(kind: str) -> list[str]:
    """The parameter names `kind` accepts, as they appear in a spec (aliases, e.g. `_test`)."""
    return _names(model_for(kind))


def _suggest(model: type[Params], name: str) -> str | None:
    close = difflib.get_close_matches(name, [n for n in _names(model) if not n.startswith("_")], n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(kind: str, name: str) -> str | None:
    """The accepted name closest to `name` (difflib), or None when nothing is close."""
    return _suggest(model_for(kind), name)


def _message(model: type[Params], exc: ValidationError, params: Mapping[str, Any]) -> str:
    kind = model.KIND
    by_name: dict[str, list[str]] = {}
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            hint = _suggest(model, name)
            known = ", ".join(sorted(n for n in _names(model) if not n.startswith("_")))
            return (f"{kind}: unknown parameter {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; {kind} accepts: {known}")
        msg = str(err["msg"]).removeprefix("Value error, ").strip()
        msg = "must be " + msg.removeprefix("Input should be ") if msg.startswith("Input should be ") else msg
        if msg not in by_name.setdefault(name, []):
            by_name[name].append(msg)
    name, msgs = next(iter(by_name.items()))
    text = " or ".join([msgs[0], *(m.removeprefix("must be ") for m in msgs[1:])])
    return f"{kind}: parameter {name!r} {text}, got {params.get(name)!r}"


def parse(kind: str, params: Mapping[str, Any]) -> Params:
    """The validated parameters of a `kind` job (defaults filled in), or TaskParamError saying what is wrong."""
    return model_for(kind).of(params)


def check(kind: str, params: Mapping[str, Any]) -> None:
    """Refuse unknown names (with a suggestion) and values of the wrong type or out of bounds."""
    parse(kind, params)


__all__ = ["LOSSES", "PARAMS", "Loss", "Params", "TaskParamError", "check", "model_for", "names", "parse",
           "suggest"]
