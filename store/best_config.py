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

HYPERPARAMS_SCHEMA_VERSION = 2
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


def promoted_horizon(doc: dict) -> int | None:
    """The horizon a promoted document was chosen at (schema 2: `horizon`; 1: `windows.horizon`)."""
    h = doc.get("horizon")
    if h is None:
        h = (doc.get("windows") or {}).get("horizon")
    return h if isinstance(h, int) and not isinstance(h, bool) else None


def load_winner(symbol: str, horizon: int, hyperparams_dir: str | os.PathLike[str] | None = None) -> dict:
    """The promoted decision for `symbol` at `horizon` across models (naive included).

    One promoted document at that horizon is the answer. Several are ranked by their validation
    `selection_metric` only when they were scored on the same validation windows (same window spec);
    numbers from different windows are not comparable, so that is a ValueError naming the files.
    FileNotFoundError when no model has a promotion for the symbol at that horizon.
    """
    sym = _safe_name("symbol", symbol, True)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    root = hyperparams_root(hyperparams_dir)
    found: list[tuple[Path, dict]] = []
    others: list[str] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        if not (model_dir / f"{sym}.json").is_file():
            continue
        doc = load_best_config(model_dir.name, sym, root)
        h = promoted_horizon(doc)
        if h == horizon:
            found.append((model_dir / f"{sym}.json", doc))
        else:
            others.append(f"{model_dir.name} h={h}")
    if not found:
        also = f" (promoted: {', '.join(others)})" if others else ""
        raise FileNotFoundError(f"no promoted config for {sym} at horizon {horizon} under {root}{also}; promote "
                                f"one with `forecast-console promote --model M --symbol {sym} --horizon {horizon}`")
    if len(found) == 1:
        return found[0][1]
    specs = {json.dumps((d.get("windows") or {}).get("validation"), sort_keys=True) for _, d in found}
    if len(specs) > 1 or "null" in specs:
        raise ValueError(f"promoted configs for {sym} at h={horizon} were scored on different validation windows "
                         f"({', '.join(str(p) for p, _ in found)}); they cannot be ranked: re-run compare and "
                         "promote its winner, or roll back the others")

    def score(doc: dict) -> float:
        metric = str(doc.get("selection_metric") or "val_mae_pct").removeprefix("val_")
        v = (doc.get("validation") or {}).get(metric)
        return float(v) if isinstance(v, int | float) else float("inf")

    return min((d for _, d in found), key=score)
