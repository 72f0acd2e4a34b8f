"""Model names, known without importing any model package (the console and JobSpec use this)."""

from __future__ import annotations

from typing import Literal, get_args

MODELS: tuple[str, ...] = ("naive", "toto", "kronos", "chronos2")
FOUNDATION_MODELS: tuple[str, ...] = ("toto", "kronos", "chronos2")
#: Weight presets: tiny = the real architecture with small random weights; pretrained = hub weights.
Preset = Literal["tiny", "pretrained"]
PRESETS: tuple[str, ...] = get_args(Preset)


class ModelNameError(ValueError):
    """An unknown model name."""


def validate_model(name: str) -> str:
    n = (name or "").strip().lower()
    if n not in MODELS:
        raise ModelNameError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return n
