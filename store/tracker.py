"""Run tracking: logging a run with its provenance, and the queries that rank runs.

Why: a "best" chosen by whatever metric happens to be there means nothing. Every run records the
commit and package versions it ran with (store/provenance.py), and `best()` is explicit about the
metric, direction and whether a usable checkpoint is required; numbers computed on different
windows are never ranked together.

Runs live in the ledger (store/ledger.py, SQLite): each numeric metric is an indexed row, so
`best()` and `top_k()` are index lookups whatever the number of runs, and a write does not grow with them.
Tables and the report over runs are store/run_reports.py.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.plain_json import clean_json, clean_metrics
from store.provenance import TRACKED_PACKAGES, env_key, git_commit, new_run_id, package_versions
from store.run_listing import ListedRun, listed_horizon
from store.run_reports import md_table
from store.storage import StoreError

if TYPE_CHECKING:  # pragma: no cover
    from store.ledger import Ledger
    from store.workspace import Workspace


def _window_key(run: Mapping[str, Any], span: str) -> str | None:
    """The recorded window spec (`extra.<span>_windows`) a run's metrics were computed on, as text."""
    spec = (run.get("extra") or {}).get(f"{span}_windows")
    if not isinstance(spec, Mapping):
        return None  # not recorded (older runs): nothing to compare
    keep = ("span", "count", "stride", "rows_covered", "first_origin", "last_origin")
    return json.dumps({k: spec.get(k) for k in keep}, sort_keys=True)


def metric_span(metric: str) -> str | None:
    """The span a metric name is computed on: `val_*` → "val", `test_*` → "test", else None."""
    return "val" if metric.startswith("val_") else "test" if metric.startswith("test_") else None


def other_span_metric(metric: str) -> str | None:
    """The same metric on the other span (`val_mae_pct` ↔ `test_mae_pct`), shown beside a ranked metric;
    None for a metric of neither span."""
    span = metric_span(metric)
    if span is None:
        return None
    return ("test_" if span == "val" else "val_") + metric.removeprefix(span + "_")


def run_window_keys(run: Mapping[str, Any]) -> dict[str, str | None]:
    """The window keys of a run's val_*/test_* metrics, indexed beside them in the ledger."""
    return {span: _window_key(run, span) for span in ("val", "test")}


class TrackerMixin:
    """Run logging and queries; mixed into Store (which provides the attributes below)."""

    workspace: Workspace
    readonly: bool
    _lock: threading.RLock
    _env_idx: dict[str, dict[str, Any]]

    # provided by Store
    @property
    def _ledger(self) -> Ledger:  # pragma: no cover
        raise NotImplementedError
    def _check_model(self, model: str) -> str:  # pragma: no cover
        raise NotImplementedError
    def _check_symbol(self, symbol: str) -> str:  # pragma: no cover
        raise NotImplementedError
    def _require_writable(self, what: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def _versions(self, key: str | None) -> dict[str, Any]:
        """Package versions of an env key (version sets are few: cached, re-read on a miss)."""
        if not key:
            return {}
        if key not in self._env_idx:
            self._env_idx = self._ledger.envs()
        return dict(self._env_idx.get(key, {}))

    def _has_run(self, run_id: str) -> bool:
        return self._ledger.has_run(run_id)

    def _refuse_mixed_windows(self, metric: str, model: str | None, symbol: str | None) -> None:
        """StoreError when `metric` (val_*/test_*) of one symbol comes from runs scored on different
        windows: such numbers are not comparable, so nothing ranks them together."""
        span = metric_span(metric)
        if span is None:
            return
        hit = self._ledger.mixed_windows(metric, model, symbol)
        if hit is not None:
            sym, a, ra, b, rb = hit
            raise StoreError(
                f"{metric} of {sym} was computed on different {span} windows in run {ra} "
                f"({a}) and run {rb} ({b}); they are not comparable: re-validate with the same "
                "windows, or rank one horizon's runs (--horizon)" + ("" if model is not None else " or one model's"))

    def _public_run(self, rec: dict[str, Any]) -> dict[str, Any]:
        rec["versions"] = self._versions(rec.get("env"))
        return rec

    # --- writing -----------------------------------------------------------------------------
    def log_run(
        self,
        model: str,
        symbol: str,
        hyperparams: Mapping[str, Any],
        metrics: Mapping[str, Any],
        checkpoint: str | Path | None = None,
        training_time: float | None = None,
        notes: str = "",
        *,
        seed: int | None = None,
        job_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Record one finished run and return its id. Validates everything before writing anything."""
        with self._lock:
            self._require_writable("log a run")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            if not isinstance(hyperparams, Mapping):
                raise StoreError(f"hyperparams must be a dict, got {type(hyperparams).__name__}")
            hp = clean_json(hyperparams, "hyperparams")
            mets = clean_metrics(metrics)
            if training_time is not None:
                if isinstance(training_time, bool) or not isinstance(training_time, int | float) \
                        or not math.isfinite(training_time) or training_time < 0:
                    raise StoreError(f"training_time must be a non-negative number of seconds, got {training_time!r}")
                training_time = float(training_time)
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise StoreError(f"seed must be an integer, got {seed!r}")
            if not isinstance(notes, str):
                raise StoreError("notes must be a string")
            ex = clean_json(dict(extra or {}), "extra")
            versions = package_versions()
            ekey = env_key(versions)
            now = time.time()
            run_id = new_run_id(model)
            while self._ledger.has_run(run_id):  # 32 random bits: practically never loops
                run_id = new_run_id(model)
            rec = {
                "run_id": run_id, "model": model, "symbol": symbol, "hyperparams": hp, "metrics": mets,
                "checkpoint": str(checkpoint) if checkpoint is not None else None,
                "training_time": training_time, "notes": notes, "seed": seed, "job_id": job_id,
                "git_commit": git_commit(), "env": ekey, "created_at": now,
                "created": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "extra": ex,
            }
            with self._ledger.transaction():
                if ekey not in self._env_idx:
                    self._ledger.put_env(ekey, versions)
                    self._env_idx[ekey] = dict(versions)
                self._ledger.add_run(rec, run_window_keys(rec))
            return run_id

    # --- reading -----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._ledger.get_run(run_id)
            return self._public_run(rec) if rec is not None else None

    def listed_runs(self, newest: int | None = None) -> list[ListedRun]:
        """Every run, oldest first, as one row of a table of runs with its job's kind/state/times
        (store/run_listing.py): no run document is decoded, so listing 10k runs costs what
        reading 10k short rows does. `newest=n`: only the n most recently created runs (a
        table's first screenful, newest first, before the whole list is read)."""
        with self._lock:
            return self._ledger.listed_runs(newest)

    def run_count(self) -> int:
        """How many runs the ledger holds."""
        with self._lock:
            return self._ledger.run_count()

    def _select(self, model: str | None, symbol: str | None, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        if model is not None:
            model = self._check_model(model)
        if symbol is not None:
            symbol = self._check_symbol(symbol)
        rest = {k: v for k, v in filters.items() if k not in ("since", "job_id")}
        out = []
        for r in self._ledger.runs(model, symbol, since=filters.get("since"), job_id=filters.get("job_id")):
            ok = True
            for k, v in rest.items():
                if k in r:
                    ok = r[k] == v
                else:
                    ok = r["hyperparams"].get(k, object()) == v
                if not ok:
                    break
            if ok:
                out.append(r)
        return out

    def runs(self, model: str | None = None, symbol: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Runs, oldest first. Extra filters match a top-level field (job_id, seed, git_commit...)
        or a hyperparameter by name; `since=<unix time>` keeps newer runs."""
        with self._lock:
            return [self._public_run(r) for r in self._select(model, symbol, filters)]

    def _ranked(self, metric: str, model: str | None, symbol: str | None, minimize: bool,
                limit: int | None = None, horizon: int | None = None) -> Iterable[dict[str, Any]]:
        """Runs with a finite `metric`, best first (ties: older first), from the ledger's metric index.

        `horizon`: only runs at that horizon (store.run_listing's rule). The window check then runs
        over those runs' documents (the ledger's index does not hold horizons), so it reads them all:
        fine for a command, not for a screen."""
        model = self._check_model(model) if model is not None else None
        symbol = self._check_symbol(symbol) if symbol is not None else None
        if horizon is None:
            self._refuse_mixed_windows(metric, model, symbol)
            return self._ledger.ranked(metric, model, symbol, minimize=bool(minimize), limit=limit)
        hits = [r for r in self._ledger.ranked(metric, model, symbol, minimize=bool(minimize))
                if listed_horizon(r) == horizon]
        span = metric_span(metric)
        if span is not None:
            first: dict[str, tuple[str, str]] = {}
            for r in hits:
                key = _window_key(r, span)
                if key is None:
                    continue
                seen = first.setdefault(r["symbol"], (key, r["run_id"]))
                if seen[0] != key:
                    raise StoreError(f"{metric} of {r['symbol']} at h={horizon} was computed on different {span} "
                                     f"windows in run {seen[1]} ({seen[0]}) and run {r['run_id']} ({key}); they are "
                                     "not comparable: re-validate with the same windows")
        return hits[:limit] if limit is not None else hits

    def _checkpoint_ok(self, rec: dict[str, Any]) -> bool:
        ck = rec.get("checkpoint")
        if not ck:
            return False
        p = Path(ck)
        if not p.is_absolute():
            p = self.workspace.root / p
        return p.exists()

    def top_k(
        self, k: int, metric: str = "val_mae_pct", model: str | None = None, symbol: str | None = None,
        minimize: bool = True, require_checkpoint: bool = False, horizon: int | None = None,
    ) -> list[dict[str, Any]]:
        """The k best runs on `metric` (runs missing it are skipped, never ranked as zero)."""
        if not isinstance(k, int) or k < 1:
            raise StoreError(f"k must be a positive integer, got {k!r}")
        if not isinstance(metric, str) or not metric:
            raise StoreError("metric must be a non-empty name such as val_mae_pct")
        with self._lock:
            out = []
            for r in self._ranked(metric, model, symbol, minimize, limit=None if require_checkpoint else k,
                                  horizon=horizon):
                if require_checkpoint and not self._checkpoint_ok(r):
                    continue
                out.append(self._public_run(r))
                if len(out) >= k:
                    break
            return out

    def best(
        self, metric: str = "val_mae_pct", model: str | None = None, symbol: str | None = None,
        minimize: bool = True, require_checkpoint: bool = False, horizon: int | None = None,
    ) -> dict[str, Any] | None:
        """The best run on `metric` (a validation metric by default: choose on validation, report on
        test); with require_checkpoint, only runs whose checkpoint exists on disk. None if no run has it."""
        if require_checkpoint:
            top = self.top_k(1, metric, model, symbol, minimize, require_checkpoint, horizon)
            return top[0] if top else None
        if not isinstance(metric, str) or not metric:
            raise StoreError("metric must be a non-empty name such as val_mae_pct")
        with self._lock:
            hit = next(iter(self._ranked(metric, model, symbol, minimize, limit=1, horizon=horizon)), None)
            return self._public_run(hit) if hit is not None else None


__all__ = ["TRACKED_PACKAGES", "TrackerMixin", "clean_json", "clean_metrics", "env_key", "git_commit", "md_table",
           "metric_span", "new_run_id", "package_versions", "run_window_keys"]
