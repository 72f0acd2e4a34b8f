"""`load_forecaster`: the one way every task gets a model (optionally with a fine-tuned adapter).

Why a registry: tasks name models by string (from a JobSpec) and must import only the package of
the model they use — importing toto-ts, chronos and kronos together costs seconds and memory.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from engine.forecasters import cache as model_cache
from engine.forecasters.base import Forecaster
from engine.forecasters.hub import ModelLoadError, resolve_weights
from engine.forecasters.lora import read_adapter_meta
from engine.models import ADAPTERS, PRESETS

__all__ = ["ADAPTERS", "ModelLoadError", "adapter_class", "load_forecaster"]

#: Load arguments an adapter records (`adapter_meta.json`) so validate/compare/forecast find the same base.
WEIGHT_KEYS: tuple[str, ...] = ("source", "tokenizer")

def adapter_class(model: str) -> type[Forecaster]:
    """The adapter class of `model`: what it knows (contexts, patches, grids) without loading weights."""
    name = (model or "").strip().lower()
    if name not in ADAPTERS:
        raise ModelLoadError(f"unknown model {model!r}; choose one of: {', '.join(ADAPTERS)}")
    mod, cls = ADAPTERS[name]
    return getattr(importlib.import_module(mod), cls)


def load_forecaster(model: str, preset: str = "tiny", *, adapter: Path | str | None = None,
                    device: str = "cpu", **kw: Any) -> Forecaster:
    """Load `model` at `preset` ("tiny" = real architecture, seeded random weights; "pretrained" =
    hub id or local directory given as `source=`), then apply `adapter` if given.

    Raises ModelLoadError (missing weights: names the id and the download command) or AdapterError.
    """
    model = (model or "").strip().lower()
    if model not in ADAPTERS:
        raise ModelLoadError(f"unknown model {model!r}; choose one of: {', '.join(ADAPTERS)}")
    if preset not in PRESETS:
        raise ModelLoadError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    meta = None
    if adapter is not None:
        meta = read_adapter_meta(Path(adapter))  # fail before the (slow) model load
        if meta.get("model") != (model or "").strip().lower():
            raise ModelLoadError(f"adapter {adapter} was trained for {meta.get('model')!r}, not {model!r}")
        if meta.get("preset") != preset:
            raise ModelLoadError(f"adapter {adapter} was trained on the {meta.get('preset')!r} preset, not {preset!r}")
        if preset == "pretrained":
            # the adapter was trained on these weights; an explicit argument still wins
            for key in WEIGHT_KEYS:
                if not kw.get(key) and meta.get(key):
                    kw[key] = meta[key]
    if preset == "pretrained":
        # fail fast (well under a second), before the model package and torch are imported
        for rid in adapter_class(model).weight_ids(kw.get("source"), kw.get("tokenizer")):
            resolve_weights(model, rid)
    cls: Any = adapter_class(model)
    cache = model_cache.active()  # a warm worker's base models (engine.forecasters.cache)
    if cache is None:
        fc = cls(preset=preset, device=device, **kw)
        if adapter is not None:
            fc.load_adapter(Path(adapter))
        return fc
    key = model_cache.cache_key(model, preset, device, kw)
    fc = cache.get(key, lambda: cls(preset=preset, device=device, **kw))
    if fc.use_adapter(Path(adapter) if adapter is not None else None):
        cache.refresh(key)  # its LoRA tensors count toward the bound
    else:
        cache.drop(key)  # the adapter rewrote the base (full fine-tune, peft): this job's alone
    return fc
