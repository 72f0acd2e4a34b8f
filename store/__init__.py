"""TinyDB-backed workspace store: jobs, runs, baselines, best picks, promotions.

Exports are lazy (PEP 562) so `from store.best_config import load_best_config` — what trading code
uses — never imports tinydb or anything else heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from store.storage import StoreError, StoreLocked
    from store.store import Store
    from store.workspace import Workspace

__all__ = ["Store", "StoreError", "StoreLocked", "Workspace"]

_WHERE = {"Store": "store.store", "StoreError": "store.storage", "StoreLocked": "store.storage",
          "Workspace": "store.workspace"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'store' has no attribute {name!r}")
