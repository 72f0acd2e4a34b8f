"""Run tracking: provenance (git commit, package versions, seed), run ids, and queries over runs.

Why: one-second run ids collide, a run without provenance cannot be reproduced, and a "best" chosen
by whatever metric happens to be there means nothing. Here a run id is time-to-the-millisecond plus 32 random
bits, every run records the commit and package versions it ran with, and `best()` is explicit
about the metric, direction and whether a usable checkpoint is required.

Runs live in the ledger (store/ledger.py, SQLite): each numeric metric is an indexed row, so
`best()` and `top_k()` are index lookups whatever the number of runs, and a write does not grow with them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import secrets
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.storage import StoreError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from store.ledger import Ledger
    from store.workspace import Workspace

_PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Distributions whose versions decide what a run means (looked up by metadata, never imported).
TRACKED_PACKAGES: tuple[str, ...] = (
    "forecast-console", "torch", "numpy", "pandas", "scipy", "transformers", "peft",
    "chronos-forecasting", "kronos-finance", "toto-ts", "gluonts", "tinydb",
)

_git_cache: dict[str, str | None] = {}
_versions_cache: dict[str, dict[str, str | None]] = {}
_cache_lock = threading.Lock()


def git_commit(root: Path | None = None) -> str | None:
    """`git rev-parse HEAD` of the project (cached per process); None without git or commits."""
    key = str(root or _PROJECT_ROOT)
    with _cache_lock:
        if key in _git_cache:
            return _git_cache[key]
    commit: str | None = None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=key, capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and len(out.stdout.strip()) >= 7:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    with _cache_lock:
        _git_cache[key] = commit
    return commit


def package_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions via importlib.metadata (cheap, and never imports torch)."""
    pk = tuple(packages)
    key = "|".join(pk)
    with _cache_lock:
        if key in _versions_cache:
            return dict(_versions_cache[key])
    out: dict[str, str | None] = {}
    for name in pk:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    with _cache_lock:
        _versions_cache[key] = out
    return dict(out)


def env_key(versions: Mapping[str, str | None]) -> str:
    """A short content hash so identical version sets are stored once (keeps store.json small)."""
    raw = json.dumps(dict(versions), sort_keys=True).encode()
    return hashlib.sha1(raw).hexdigest()[:12]


def new_run_id(model: str) -> str:
    """Sortable and collision-free: UTC time to the millisecond, the model, 32 random bits."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{model}-{secrets.token_hex(4)}"


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


def fast_copy(value: Any) -> Any:
    """Deep copy of plain JSON data (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: fast_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fast_copy(v) for v in value]
    return value


def _flatten(prefix: str, d: Mapping[str, Any], out: dict[str, Any]) -> None:
    for k, v in d.items():
        if isinstance(v, Mapping):
            _flatten(f"{prefix}{k}.", v, out)
        elif isinstance(v, list):
            out[f"{prefix}{k}"] = json.dumps(v)
        else:
            out[f"{prefix}{k}"] = v


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-flavoured markdown table (used by report())."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _window_key(run: Mapping[str, Any], span: str) -> str | None:
    """The recorded window spec (`extra.<span>_windows`) a run's metrics were computed on, as text."""
    spec = (run.get("extra") or {}).get(f"{span}_windows")
    if not isinstance(spec, Mapping):
        return None  # not recorded (older runs): nothing to compare
    keep = ("span", "count", "stride", "rows_covered", "first_origin", "last_origin")
    return json.dumps({k: spec.get(k) for k in keep}, sort_keys=True)


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
        span = "val" if metric.startswith("val_") else "test" if metric.startswith("test_") else None
        if span is None:
            return
        hit = self._ledger.mixed_windows(metric, model, symbol)
        if hit is not None:
            sym, a, ra, b, rb = hit
            raise StoreError(
                f"{metric} of {sym} was computed on different {span} windows in run {ra} "
                f"({a}) and run {rb} ({b}); they are not comparable: "
                "re-validate with the same windows, or filter by model")

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
                limit: int | None = None) -> Iterable[dict[str, Any]]:
        """Runs with a finite `metric`, best first (ties: older first), from the ledger's metric index."""
        model = self._check_model(model) if model is not None else None
        symbol = self._check_symbol(symbol) if symbol is not None else None
        self._refuse_mixed_windows(metric, model, symbol)
        return self._ledger.ranked(metric, model, symbol, minimize=bool(minimize), limit=limit)

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
        minimize: bool = True, require_checkpoint: bool = False,
    ) -> list[dict[str, Any]]:
        """The k best runs on `metric` (runs missing it are skipped, never ranked as zero)."""
        if not isinstance(k, int) or k < 1:
            raise StoreError(f"k must be a positive integer, got {k!r}")
        if not isinstance(metric, str) or not metric:
            raise StoreError("metric must be a non-empty name such as val_mae_pct")
        with self._lock:
            out = []
            for r in self._ranked(metric, model, symbol, minimize, limit=None if require_checkpoint else k):
                if require_checkpoint and not self._checkpoint_ok(r):
                    continue
                out.append(self._public_run(r))
                if len(out) >= k:
                    break
            return out

    def best(
        self, metric: str = "val_mae_pct", model: str | None = None, symbol: str | None = None,
        minimize: bool = True, require_checkpoint: bool = False,
    ) -> dict[str, Any] | None:
        """The best run on `metric` (a validation metric by default: choose on validation, report on
        test); with require_checkpoint, only runs whose checkpoint exists on disk. None if no run has it."""
        if require_checkpoint:
            top = self.top_k(1, metric, model, symbol, minimize, require_checkpoint)
            return top[0] if top else None
        if not isinstance(metric, str) or not metric:
            raise StoreError("metric must be a non-empty name such as val_mae_pct")
        with self._lock:
            hit = next(iter(self._ranked(metric, model, symbol, minimize, limit=1)), None)
            return self._public_run(hit) if hit is not None else None

    def compare(
        self, run_ids: Iterable[str] | None = None, model: str | None = None, symbol: str | None = None,
        metrics: Iterable[str] | None = None, sort_by: str | None = None,
    ) -> pd.DataFrame:
        """One row per run: ids, model, symbol, metrics and hyperparameters (columns `hp.<name>`)."""
        import pandas as pd

        with self._lock:
            if run_ids is not None:
                wanted_ids = list(run_ids)
                idx = {r["run_id"]: r for r in self._ledger.runs(run_ids=wanted_ids)}
                recs = []
                for rid in wanted_ids:
                    if rid not in idx:
                        raise StoreError(f"no run with id {rid!r}")
                    recs.append(idx[rid])
            else:
                recs = self._select(model, symbol, {})
            wanted = list(metrics) if metrics is not None else None
            rows = []
            for r in recs:
                row: dict[str, Any] = {"run_id": r["run_id"], "model": r["model"], "symbol": r["symbol"],
                                       "created": r["created"], "seed": r["seed"],
                                       "training_time": r["training_time"],
                                       "checkpoint": r["checkpoint"]}
                mets = r["metrics"] if wanted is None else {m: r["metrics"].get(m) for m in wanted}
                row.update(mets)
                _flatten("hp.", r["hyperparams"], row)
                rows.append(row)
        df = pd.DataFrame(rows)
        if sort_by is not None and not df.empty:
            if sort_by not in df.columns:
                raise StoreError(f"cannot sort by {sort_by!r}: no such column")
            df = df.sort_values(sort_by, na_position="last", kind="stable").reset_index(drop=True)
        return df

    def hyperparameter_impact(self, model: str, param: str, metric: str = "val_mae_pct",
                              symbol: str | None = None) -> pd.DataFrame:
        """How `metric` varies with one hyperparameter: count/mean/std/min/max per value, best mean first."""
        import pandas as pd

        with self._lock:
            rows = []
            for r in self._select(model, symbol, {}):
                v = r["metrics"].get(metric)
                if v is None or param not in r["hyperparams"]:
                    continue
                pv = r["hyperparams"][param]
                rows.append({param: json.dumps(pv) if isinstance(pv, list | dict) else pv, metric: v})
        cols = [param, "count", "mean", "std", "min", "max"]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = pd.DataFrame(rows)
        g = df.groupby(param, dropna=False)[metric].agg(["count", "mean", "std", "min", "max"]).reset_index()
        return g.sort_values("mean", kind="stable").reset_index(drop=True)[cols]

    def report(self, metric: str = "val_mae_pct", test_metric: str = "test_mae_pct") -> str:
        """A markdown summary: best run per (model, symbol) chosen on `metric` and reported on
        `test_metric`, current picks, recent promotions."""
        with self._lock:
            groups = {(m, s): n for m, s, n in self._ledger.run_groups()}
            lines = ["# forecast-console report", "",
                     f"Workspace: `{self.workspace.root}`  ",
                     f"Runs: {sum(groups.values())}; generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}", ""]
            lines += [f"## Best run per model and symbol (chosen on `{metric}`, reported on `{test_metric}`)", ""]
            rows = []
            for (m, s) in sorted(groups):
                b = self.best(metric, m, s)
                if b is None:
                    rows.append([m, s, groups[(m, s)], None, None, None])
                else:
                    rows.append([m, s, groups[(m, s)], b["run_id"], b["metrics"].get(metric),
                                 b["metrics"].get(test_metric)])
            lines.append(md_table(["model", "symbol", "runs", "best run", metric, test_metric], rows)
                         if rows else "_no runs yet_")
            picks = self.picks()  # type: ignore[attr-defined]
            lines += ["", "## Current picks (chosen on validation, reported on test)", ""]
            if picks:
                prow = [[p.model, p.symbol, p.horizon, p.preset, p.selection_metric,
                         f"{_fmt(p.score())} ({p.val_windows.short() if p.val_windows else 'val ?w'})",
                         f"{_fmt(p.test.get(p.selection_metric))} "
                         f"({p.test_windows.short() if p.test_windows else 'test ?w'})",
                         p.source_run, p.set_iso] for p in picks]
                lines.append(md_table(["model", "symbol", "h", "preset", "selection metric", "validation", "test",
                                       "source run", "set"], prow))
            else:
                lines.append("_no picks yet_")
            promos = self.promotions()  # type: ignore[attr-defined]
            lines += ["", "## Promotions (latest 20)", ""]
            if promos:
                lines.append(md_table(["when", "action", "model", "symbol", "h", "source", "by"],
                                      [[p.at_iso, p.action, p.model, p.symbol, p.horizon, p.source, p.by]
                                       for p in promos[-20:]]))
            else:
                lines.append("_no promotions yet_")
            return "\n".join(lines) + "\n"
