"""Plain JSON values for the store: what a record may hold, and metrics as numbers.

Why here and not at each writer: a numpy scalar, a NaN or a Path that reaches a JSON encoder is a
failed write after validation said yes; these turn such values into plain JSON (NaN/inf -> None,
a diverged run's metric kept as missing, never ranked as a winner) or refuse them naming the part.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from store.storage import StoreError


def clean_json(value: Any, what: str) -> Any:
    """Plain JSON (numpy scalars unwrapped, NaN/inf → None) or StoreError naming the bad part."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"{what}: key {k!r} is not a string")
            out[k] = clean_json(v, f"{what}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [clean_json(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(TypeError, ValueError):
            return clean_json(item(), what)
    raise StoreError(f"{what} is not JSON-serialisable ({type(value).__name__}: {value!r:.80})")


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float | bool | None]:
    """Metrics are name → number; a diverged run's NaN is kept as None (missing), not as a winner."""
    if not isinstance(metrics, Mapping):
        raise StoreError(f"metrics must be a dict of name -> number, got {type(metrics).__name__}")
    out: dict[str, float | bool | None] = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            raise StoreError(f"metric name {k!r} must be a non-empty string")
        if hasattr(v, "item") and callable(v.item):
            v = v.item()
        if v is None or isinstance(v, bool):  # flags such as stopped_early are kept as they are
            out[k] = v
        elif not isinstance(v, int | float):
            raise StoreError(f"metric {k!r} must be a number, got {type(v).__name__} {v!r:.40}")
        else:
            out[k] = float(v) if math.isfinite(v) else None
    return out


__all__ = ["clean_json", "clean_metrics"]
