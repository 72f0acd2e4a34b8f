"""Read a promoted config: the one function trading code needs.

Deliberately imports only json, os and pathlib (no torch, textual, tinydb, not even the rest of this
package's modules at import time beyond `store/__init__`'s lazy exports), so a trading process can
`from store.best_config import load_best_config` without paying for the console or the models.
The file format is documented in docs/HYPERPARAMS_SCHEMA.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

HYPERPARAMS_SCHEMA_VERSION = 1
ENV_HYPERPARAMS = "FORECAST_HYPERPARAMS"
_REQUIRED = ("schema_version", "symbol", "model", "config", "validation", "test", "windows",
             "selection_metric", "source", "promoted_at")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _safe_name(kind: str, value: object, upper: bool) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{kind} is empty")
    v = value.strip().upper() if upper else value.strip().lower()
    if "/" in v or "\\" in v or ".." in v or v.startswith(".") or not set(v) <= _NAME_CHARS or len(v) > 32:
        raise ValueError(f"{kind} {value!r} is not a valid name (letters, digits, '.', '_', '-'; no paths)")
    return v


def hyperparams_root(hyperparams_dir: str | os.PathLike[str] | None = None) -> Path:
    """Argument, else $FORECAST_HYPERPARAMS, else ./hyperparams (same rule as engine.paths)."""
    raw = hyperparams_dir or os.environ.get(ENV_HYPERPARAMS) or "hyperparams"
    return Path(raw).expanduser().resolve()


def best_config_path(model: str, symbol: str, hyperparams_dir: str | os.PathLike[str] | None = None) -> Path:
    return hyperparams_root(hyperparams_dir) / _safe_name("model", model, False) / \
        f"{_safe_name('symbol', symbol, True)}.json"


def load_best_config(model: str, symbol: str, hyperparams_dir: str | os.PathLike[str] | None = None) -> dict:
    """The promoted config document for (model, symbol) — see docs/HYPERPARAMS_SCHEMA.md.

    FileNotFoundError if nothing is promoted; ValueError if the file is not a valid document or
    was written by a newer schema than this reader understands.
    """
    path = best_config_path(model, symbol, hyperparams_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no promoted config for {model}/{symbol} at {path}; promote one with "
            f"`forecast-console promote --model {model} --symbol {symbol}`"
        ) from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"promoted config {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"promoted config {path} is not a JSON object")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise ValueError(f"promoted config {path} is missing {', '.join(missing)}")
    version = doc["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"promoted config {path} has an invalid schema_version {version!r}")
    if version > HYPERPARAMS_SCHEMA_VERSION:
        raise ValueError(f"promoted config {path} uses schema version {version}; this reader understands "
                         f"up to {HYPERPARAMS_SCHEMA_VERSION}: upgrade forecast-console")
    if not isinstance(doc["config"], dict):
        raise ValueError(f"promoted config {path}: 'config' must be an object")
    return doc
