"""Base models kept in memory by a warm worker, bounded in bytes, least recently used evicted first.

Why: building a model (reading 100–500 MB of pretrained weights, moving them to the GPU) is most
of a short model job's start-up. A warm worker (engine.pool_worker) enables this cache; a
one-process-per-job worker never does (`load_forecaster` then builds a model every time).

What is cached is the base model per (model, preset, device, load options), and only for loads
without an adapter: those are the inference-only uses of the short job kinds (validate, compare,
calibrate, forecast of a base model), which never change the model, so jobs share the instance.
A load with a fine-tuned adapter builds a fresh model (loading an adapter rewrites the modules
in place; the adapter objects do not support copying, so one cannot be swapped onto a shared
base safely). Train jobs never run in a warm worker. The bound counts the cached bases' tensor
bytes (parameters and buffers); least recently used go first; one larger than the bound is not kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

ENV_CACHE_MB = "FORECAST_MODEL_CACHE_MB"
DEFAULT_CACHE_MB = 2048.0


def tensor_bytes(obj: Any) -> int:
    """Bytes of the torch tensors an adapter object holds through its modules (0 without torch)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    seen: set[int] = set()
    total = 0
    for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
        if isinstance(value, torch.nn.Module):
            for t in (*value.parameters(), *value.buffers()):
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
    return total


def cache_key(model: str, preset: str, device: str, kw: dict[str, Any]) -> str:
    return json.dumps([model, preset, device, kw], sort_keys=True, default=str)


class ModelCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @property
    def bytes(self) -> int:
        return sum(n for _, n in self._items.values())

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        return list(self._items)

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        """The cached base for `key`, building (and caching) it on a miss."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return hit[0]
        self.misses += 1
        base = build()
        size = tensor_bytes(base)
        if size > self.max_bytes:
            return base  # never fits: used once, not kept
        self._items[key] = (base, size)
        while self.bytes > self.max_bytes:
            self._items.popitem(last=False)
            self.evictions += 1
        return base

    def clear(self) -> None:
        self._items.clear()


#: The process's cache: None (one-process workers, tests, the CLI) until a warm worker enables it.
_active: ModelCache | None = None


def enable(max_mb: float | None = None) -> ModelCache:
    import os

    global _active
    mb = max_mb if max_mb is not None else float(os.environ.get(ENV_CACHE_MB, DEFAULT_CACHE_MB))
    _active = ModelCache(int(mb * 1024 * 1024))
    return _active


def active() -> ModelCache | None:
    return _active


def disable() -> None:
    global _active
    _active = None


__all__ = ["DEFAULT_CACHE_MB", "ENV_CACHE_MB", "ModelCache", "active", "cache_key", "disable", "enable",
           "tensor_bytes"]
