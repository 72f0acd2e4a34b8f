"""Promotion: write the chosen config to `hyperparams/<model>/<SYMBOL>.json` for trading code.

Why it is careful: that file is the hand-off to a live system. It is written atomically (never half a
file), in a documented versioned schema (docs/HYPERPARAMS_SCHEMA.md), carries where it came from
(run, job, pick) and what it replaced, and every promotion or rollback is appended to the
`promotions` audit table with the full file contents, so `rollback()` can restore the exact bytes'
worth of config that was live before — including a file that predates the store.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.best_config import HYPERPARAMS_SCHEMA_VERSION
from store.storage import StoreError, atomic_write_bytes, fsync_dir
from store.tracker import fast_copy

if TYPE_CHECKING:  # pragma: no cover
    from store.storage import AtomicJSONStorage
    from store.workspace import Workspace


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _split_metrics(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`val_x` → validation[x], `test_x` → test[x]; other metrics are not part of the hand-off."""
    val = {k[4:]: v for k, v in metrics.items() if k.startswith("val_")}
    test = {k[5:]: v for k, v in metrics.items() if k.startswith("test_")}
    return val, test


def _windows_from_run(run: dict[str, Any]) -> dict[str, Any]:
    extra = run.get("extra") or {}
    if isinstance(extra.get("windows"), dict):
        w = dict(extra["windows"])
    else:
        hp = run.get("hyperparams") or {}
        w = {
            "horizon": hp.get("horizon", hp.get("prediction_length")),
            "context": hp.get("context", hp.get("context_len", hp.get("context_length"))),
            "spans": extra.get("spans"),
        }
    w.setdefault("horizon", None)
    w.setdefault("context", None)
    w.setdefault("spans", None)
    return w


def _summary(content: dict[str, Any] | None) -> dict[str, Any] | None:
    """What `previous` records: the replaced file without its own `previous` (no nesting chain)."""
    if content is None:
        return None
    return {k: v for k, v in content.items() if k != "previous"}


class PromotionMixin:
    """promote / rollback / promotions; mixed into Store."""

    workspace: Workspace
    hyperparams_dir: Path
    readonly: bool
    _lock: threading.RLock
    _storage: AtomicJSONStorage

    def _check_model(self, model: str) -> str: ...  # pragma: no cover
    def _check_symbol(self, symbol: str) -> str: ...  # pragma: no cover
    def _require_writable(self, what: str) -> None: ...  # pragma: no cover
    def _table(self, name: str) -> dict[str, dict[str, Any]]: ...  # pragma: no cover
    def _insert(self, name: str, doc: dict[str, Any]) -> int: ...  # pragma: no cover
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...  # pragma: no cover
    def pick(self, model: str, symbol: str) -> dict[str, Any] | None: ...  # pragma: no cover

    def promoted_path(self, model: str, symbol: str) -> Path:
        return self.hyperparams_dir / self._check_model(model) / f"{self._check_symbol(symbol)}.json"

    def _read_promoted(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"promoted config {path} cannot be read ({exc}); fix or move it away first") from None

    def _content_from(self, model: str, symbol: str, source: str) -> dict[str, Any]:
        if source == "pick":
            p = self.pick(model, symbol)
            if p is None:
                raise StoreError(f"no pick for {model}/{symbol} yet: run validation or a sweep first, "
                                 "or promote a specific run with --run RUN_ID")
            run_id = p.get("source_run")
            run = self.get_run(run_id) if run_id else None
            val = dict(p.get("validation") or {})
            test = dict(p.get("test") or {})
            windows = dict(p.get("windows") or {})
            for k in ("horizon", "context", "spans"):
                windows.setdefault(k, None)
            return {
                "config": dict(p["config"]), "validation": val, "test": test, "windows": windows,
                "selection_metric": p.get("selection_metric", "val_mae_pct"),
                "source": {"run_id": run_id, "job_id": p.get("job_id") or (run or {}).get("job_id"),
                           "pick": True},
                "provenance": {"git_commit": (run or {}).get("git_commit"),
                               "versions": (run or {}).get("versions")},
                # how the pick was decided: naive's scores on the same windows, the calibration
                # verdict, whether it beat naive significantly on validation, and where it was chosen
                "decision": {k: p[k] for k in ("naive", "calibrated", "beats_naive", "decision_note", "selection_span")
                             if p.get(k) is not None},
            }
        run = self.get_run(source)
        if run is None:
            raise StoreError(f"no run with id {source!r}; nothing was promoted "
                             "(list runs with `forecast-console runs`)")
        if run["model"] != model or run["symbol"] != symbol:
            raise StoreError(f"run {source} is {run['model']}/{run['symbol']}, not {model}/{symbol}; "
                             "nothing was promoted")
        val, test = _split_metrics(run["metrics"])
        if not any(v is not None for v in val.values()):
            raise StoreError(f"run {source} has no validation metrics (val_*): a config is chosen on the "
                             "validation span, so it cannot be promoted")
        return {
            "config": dict(run["hyperparams"]), "validation": val, "test": test,
            "windows": _windows_from_run(run),
            "selection_metric": (run.get("extra") or {}).get("selection_metric", "val_mae_pct"),
            "source": {"run_id": run["run_id"], "job_id": run.get("job_id"), "pick": False},
            "provenance": {"git_commit": run.get("git_commit"), "versions": run.get("versions"),
                           "checkpoint": run.get("checkpoint"), "seed": run.get("seed")},
        }

    def _write_promoted(self, path: Path, content: dict[str, Any] | None) -> None:
        """Atomically replace (or, for None, remove) the promoted file."""
        if content is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                fsync_dir(path.parent)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (json.dumps(content, indent=2, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")
        atomic_write_bytes(path, data)

    def _audit(self, entry: dict[str, Any], path: Path, restore: dict[str, Any] | None) -> None:
        """Append the audit entry; if that fails, put the file back as it was (no unlogged change)."""
        try:
            self._insert("promotions", entry)
        except BaseException:
            with contextlib.suppress(Exception):
                self._write_promoted(path, restore)
            raise

    def promote(self, model: str, symbol: str, source: str = "pick", by: str | None = None) -> Path:
        """Promote the current pick (source="pick") or a run id; returns the file written."""
        with self._lock:
            self._require_writable("promote")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            if not isinstance(source, str) or not source:
                raise StoreError("source must be 'pick' or a run id")
            path = self.promoted_path(model, symbol)
            body = self._content_from(model, symbol, source)
            replaced = self._read_promoted(path)
            now = time.time()
            content: dict[str, Any] = {
                "schema_version": HYPERPARAMS_SCHEMA_VERSION,
                "symbol": symbol,
                "model": model,
                **{k: body[k] for k in ("config", "validation", "test", "windows", "selection_metric", "source")},
                "promoted_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
                "promoted_by": by or _who(),
                "provenance": body["provenance"],
                **({"decision": body["decision"]} if body.get("decision") else {}),
                "previous": _summary(replaced),
            }
            self._write_promoted(path, content)
            self._audit({
                "action": "promote", "model": model, "symbol": symbol, "path": str(path),
                "source": source, "run_id": body["source"]["run_id"], "by": content["promoted_by"],
                "at": now, "at_iso": content["promoted_at"], "content": content, "replaced": replaced,
            }, path, replaced)
            return path

    def _stack(self, model: str, symbol: str) -> list[dict[str, Any]]:
        """Live promotions for (model, symbol), oldest first: promote pushes, rollback pops."""
        stack: list[dict[str, Any]] = []
        for e in self._table("promotions").values():
            if e["model"] != model or e["symbol"] != symbol:
                continue
            if e["action"] == "promote":
                stack.append(e)
            elif e["action"] == "rollback" and stack:
                stack.pop()
        return stack

    def rollback(self, model: str, symbol: str, by: str | None = None) -> Path | None:
        """Undo the latest live promotion: restore what it replaced (or remove the file if it replaced
        nothing, returning None). No promotion to undo → StoreError, nothing changed."""
        with self._lock:
            self._require_writable("roll back")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            stack = self._stack(model, symbol)
            if not stack:
                undone = any(e["model"] == model and e["symbol"] == symbol
                             for e in self._table("promotions").values())
                why = "every promotion was already rolled back" if undone else "no promotion is recorded"
                raise StoreError(f"nothing to roll back for {model}/{symbol}: {why}")
            top = stack[-1]
            path = self.promoted_path(model, symbol)
            current = self._read_promoted(path)
            restore = top.get("replaced")
            self._write_promoted(path, restore)
            now = time.time()
            self._audit({
                "action": "rollback", "model": model, "symbol": symbol, "path": str(path),
                "source": (restore or {}).get("source", {}).get("run_id") if restore else None,
                "run_id": top.get("run_id"), "by": by or _who(), "at": now,
                "at_iso": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
                "content": restore, "replaced": current, "undoes_at": top.get("at"),
            }, path, current)
            return path if restore is not None else None

    def promotions(self, model: str | None = None, symbol: str | None = None) -> list[dict[str, Any]]:
        """The audit log, oldest first (entries carry the full file contents they wrote/replaced)."""
        with self._lock:
            m = self._check_model(model) if model is not None else None
            s = self._check_symbol(symbol) if symbol is not None else None
            return [fast_copy(e) for e in self._table("promotions").values()
                    if (m is None or e["model"] == m) and (s is None or e["symbol"] == s)]
