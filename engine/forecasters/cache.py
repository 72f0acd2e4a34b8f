"""Base models kept in memory by a warm worker, bounded in bytes, least recently used evicted first.

Why: building a model (reading 100–500 MB of pretrained weights, moving them to the GPU) is most
of a short model job's start-up. A warm worker (engine.pool_worker) enables this cache; a
one-process-per-job worker never does (`load_forecaster` then builds a model every time).

What is cached is the base model per (model, preset, device, load options); the short job kinds
(validate, compare, calibrate, regression, forecast) only run inference, so jobs share the instance.
A fine-tuned LoRA adapter is swapped on top of the cached base (`FoundationForecaster.use_adapter`):
a plain LoRA wraps the base linears without changing their weights, so the next load takes it off
again (or keeps it when it is the same adapter files: a second job with the same adapter reloads
nothing), and every job gets exactly the weights it asked for. An adapter that rewrites the base (a
full fine-tune, or one only peft can apply) is this job's alone: the entry is dropped and the next
job builds a fresh base. Train jobs never run in a warm worker. The bound counts the cached models'
tensor bytes (parameters and buffers, LoRA included); least recently used go first; one larger than
the bound is not kept.
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

    def refresh(self, key: str) -> None:
        """Re-count `key`'s bytes after its model changed (an adapter swapped on), then keep the bound:
        other entries go least recent first; if it alone exceeds the bound it is not kept."""
        hit = self._items.get(key)
        if hit is None:
            return
        size = tensor_bytes(hit[0])
        if size > self.max_bytes:
            self.drop(key)
            return
        self._items[key] = (hit[0], size)
        while self.bytes > self.max_bytes:
            self._items.popitem(last=False)
            self.evictions += 1

    def drop(self, key: str) -> None:
        """Forget `key` (its model may no longer be shared)."""
        self._items.pop(key, None)

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
