"""The model registry: name → the adapter class that knows the model, without importing any model package.

Why here: JobSpec, the console and the CLI need the names; the tasks and the planner ask the adapter
class (engine.forecasters.registry.adapter_class) for everything else. Adding a model is its adapter
module plus one line in ADAPTERS (docs/ADDING_A_MODEL.md).
"""

from __future__ import annotations

from typing import Literal, get_args

#: model name -> (module, class) of its adapter; imported lazily so only the chosen package loads.
ADAPTERS: dict[str, tuple[str, str]] = {
    "naive": ("engine.forecasters.naive", "NaiveForecaster"),
    "toto": ("engine.forecasters.toto", "TotoForecaster"),
    "kronos": ("engine.forecasters.kronos", "KronosForecaster"),
    "chronos2": ("engine.forecasters.chronos2", "Chronos2Forecaster"),
}
#: The baseline every model is judged against (no weights, nothing to train).
NAIVE = "naive"
MODELS: tuple[str, ...] = tuple(ADAPTERS)
FOUNDATION_MODELS: tuple[str, ...] = tuple(m for m in ADAPTERS if m != NAIVE)
#: Weight presets: tiny = the real architecture with small random weights; pretrained = hub weights.
Preset = Literal["tiny", "pretrained"]
PRESETS: tuple[str, ...] = get_args(Preset)
#: Training losses (engine.forecasters.losses; `native` is each model's own objective).
Loss = Literal["native", "huber", "heteroscedastic", "quantile", "mse"]
LOSSES: tuple[str, ...] = get_args(Loss)


class ModelNameError(ValueError):
    """An unknown model name."""


def validate_model(name: str) -> str:
    n = (name or "").strip().lower()
    if n not in ADAPTERS:  # the live registry (a test may register an adapter)
        raise ModelNameError(f"unknown model {name!r}; choose one of: {', '.join(ADAPTERS)}")
    return n
