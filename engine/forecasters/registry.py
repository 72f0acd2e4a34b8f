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
from engine.models import PRESETS

__all__ = ["ADAPTERS", "ModelLoadError", "load_forecaster", "adapter_class"]

#: model name -> (module, class); resolved lazily so only the chosen package is imported.
ADAPTERS: dict[str, tuple[str, str]] = {
    "toto": ("engine.forecasters.toto", "TotoForecaster"),
    "kronos": ("engine.forecasters.kronos", "KronosForecaster"),
    "chronos2": ("engine.forecasters.chronos2", "Chronos2Forecaster"),
}

#: Default pretrained weights per model (hub ids; Kronos also needs its tokenizer).
DEFAULT_SOURCES: dict[str, tuple[str, ...]] = {
    "toto": ("Datadog/Toto-Open-Base-1.0",),
    "kronos": ("NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base"),
    "chronos2": ("amazon/chronos-2",),
}


def adapter_class(model: str) -> type[Any]:
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
        if preset == "pretrained" and "source" not in kw and meta.get("source"):
            kw["source"] = meta["source"]
    if preset == "pretrained":
        # fail fast (well under a second), before the model package and torch are imported
        ids = [kw.get("source") or DEFAULT_SOURCES[model][0]]
        if model == "kronos" and (kw.get("tokenizer") or not str(ids[0]).endswith("-mini")):
            ids.append(kw.get("tokenizer") or DEFAULT_SOURCES[model][1])
        for rid in ids:
            resolve_weights(model, rid)
    cls = adapter_class(model)
    cache = model_cache.active()  # a warm worker's base models (engine.forecasters.cache)
    if cache is not None and adapter is None:
        fc = cache.get(model_cache.cache_key(model, preset, device, kw), lambda: cls(preset=preset, device=device, **kw))
    else:
        fc = cls(preset=preset, device=device, **kw)
    if adapter is not None:
        fc.load_adapter(Path(adapter))
    return fc
