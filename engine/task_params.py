"""The parameters each job kind accepts, so a misspelled one is refused instead of silently ignored.

Why a table: tasks read `spec.params` with `.get(name, default)`, so `horizn=16` used to run with the
default horizon and nobody noticed. `JobSpec.create` checks every name against this table (with a
"did you mean" from difflib) and every value against a simple type, before anything is queued.

The names were collected from what each `engine/tasks/<kind>.py` reads from `spec.params`; the
tests keep the table in step with the train task's and the sweep's own lists. Pure module (no torch,
no task imports), so the CLI, the console form and the engine can all afford it.

Types are deliberately simple: "int" (not bool), "number" (int or float), "str", "bool", "list",
"dict", or several joined by "|" (e.g. "int|list" for grids that take one value or a list). A JSON
null is accepted for any parameter and means "the task's default".
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

#: Every kind accepts these: the worker's scripted-task hook (honoured only with FORECAST_TEST_HOOKS=1)
#: and `resume`, which a retry of an interrupted job adds (a train job continues from its checkpoint).
COMMON: dict[str, str] = {"_test": "dict", "resume": "bool"}

#: Span/window settings shared by the evaluation kinds (engine.evaluation.build_setup).
_EVAL: dict[str, str] = {
    "preset": "str", "horizon": "int", "context": "int", "seed": "int", "val_windows": "int",
    "test_windows": "int", "stride": "int", "val_rows": "int", "test_rows": "int", "dayfirst": "bool",
}

#: Train params a sweep passes unchanged to each trial's train job (engine.tasks.sweep uses this).
TRAIN_PASSTHROUGH: dict[str, str] = {
    "max_steps_per_epoch": "int", "stride": "int", "mae_samples": "int", "batch_size": "int", "val_rows": "int",
    "test_rows": "int", "patience": "int", "finetune": "str", "source": "str", "tokenizer": "str",
    "difficulty": "str",
}

PARAMS: dict[str, dict[str, str]] = {
    # engine/tasks/baseline.py (naive forecasts: no model, so no preset)
    "baseline": {
        "horizon": "int|list", "span": "str", "context": "int", "stride": "int", "tier_horizon": "int",
        "tier_span": "str", "methods": "list", "val_rows": "int", "test_rows": "int",
    },
    # engine/tasks/train.py (train.KNOWN)
    "train": {
        "preset": "str", "source": "str", "tokenizer": "str", "epochs": "int", "context": "int", "horizon": "int",
        "lr": "number", "lora_rank": "int", "loss": "str", "batch_size": "int", "seed": "int",
        "max_steps_per_epoch": "int", "finetune": "str", "difficulty": "str", "stride": "int", "val_rows": "int",
        "test_rows": "int", "patience": "int", "mae_samples": "int", "run_id": "str",
    },
    # engine/tasks/validate.py: the span settings, the mode, and the grid overrides of search_space
    "validate": {
        **_EVAL, "mode": "str", "selection_metric": "str", "dm_alpha": "number", "num_samples": "int|list", "aggregations": "str|list",
        "temperature": "number|list", "top_p": "number|list", "top_k": "int|list", "max_context": "int|list",
        "clip": "number|list", "contexts": "int|list", "methods": "str|list",
    },
    # engine/tasks/compare.py
    "compare": {**_EVAL, "selection_metric": "str", "top_k": "int", "models": "list", "dm_alpha": "number"},
    # engine/tasks/calibrate.py
    "calibrate": {**_EVAL, "metric": "str", "require_test_improvement": "bool"},
    # engine/tasks/regression.py
    "regression": {**_EVAL, "metric": "str", "span": "str", "models": "list", "threshold_pct": "number"},
    # engine/tasks/sweep.py: SWEEP_PARAMS | TRAIN_PASSTHROUGH | {"name"}
    "sweep": {
        "mode": "str", "max_runs": "int", "preset": "str", "horizon": "int", "context": "int", "epochs": "int",
        "seed": "int", "gpus": "number", "vram_gb": "number", "name": "str", **TRAIN_PASSTHROUGH,
    },
    # engine/tasks/pipeline.py (run)
    "pipeline": {
        "preset": "str", "horizon": "int", "context": "int", "models": "list", "epochs": "int", "mode": "str",
        "val_windows": "int", "test_windows": "int", "stride": "int", "dayfirst": "bool", "name": "str",
    },
}


#: Names a kind refuses with a reason of its own (not a typo: a setting that would be overridden).
REFUSED: dict[str, dict[str, str]] = {
    "sweep": {k: "is what the sweep searches; leave it out (or queue a single train job)"
              for k in ("lr", "lora_rank", "loss", "epoch_scale")},
}


class TaskParamError(ValueError):
    """A parameter the job kind does not read, or a value of the wrong type; the message says which."""


def accepted(kind: str) -> dict[str, str]:
    """Name → type of every parameter `kind` accepts (the common hooks included)."""
    if kind not in PARAMS:
        raise TaskParamError(f"unknown job kind {kind!r}; choose one of: {', '.join(PARAMS)}")
    return {**PARAMS[kind], **COMMON}


def _type_ok(value: Any, types: str) -> bool:
    for t in types.split("|"):
        if t == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if t == "str" and isinstance(value, str):
            return True
        if t == "bool" and isinstance(value, bool):
            return True
        if t == "list" and isinstance(value, list | tuple):
            return True
        if t == "dict" and isinstance(value, dict):
            return True
    return False


def _a(types: str) -> str:
    words = {"int": "an integer", "number": "a number", "str": "a string", "bool": "true or false",
             "list": "a list", "dict": "an object"}
    return " or ".join(words.get(t, t) for t in types.split("|"))


def suggest(kind: str, name: str) -> str | None:
    """The accepted name closest to `name` (difflib), or None when nothing is close."""
    names = [n for n in accepted(kind) if not n.startswith("_")]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def check(kind: str, params: Mapping[str, Any]) -> None:
    """Refuse unknown names (with a suggestion) and values of the wrong simple type.

    Raises TaskParamError naming the first offending parameter and listing what the kind accepts.
    """
    spec = accepted(kind)
    for name in params:
        why = REFUSED.get(kind, {}).get(name)
        if why:
            raise TaskParamError(f"{kind}: {name} {why}")
        if name not in spec:
            hint = suggest(kind, name)
            known = ", ".join(sorted(n for n in spec if not n.startswith("_")))
            raise TaskParamError(
                f"{kind}: unknown parameter {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; {kind} accepts: {known}")
    for name, value in params.items():
        if value is not None and not _type_ok(value, spec[name]):
            raise TaskParamError(f"{kind}: parameter {name!r} must be {_a(spec[name])}, got {value!r}")


__all__ = ["COMMON", "PARAMS", "REFUSED", "TaskParamError", "accepted", "check", "suggest"]
