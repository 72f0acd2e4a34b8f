"""Run tracking: provenance (git commit, package versions, seed), run ids, and queries over runs.

Why: the prior art's tracker had one-second run ids (collisions), no provenance, and chose "best"
by whatever metric happened to be there. Here a run id is time-to-the-millisecond plus 32 random
bits, every run records the commit and package versions it ran with, and `best()` is explicit
about the metric, direction and whether a usable checkpoint is required.

Queries run against the writer's in-memory copy and are memoised per store generation (any write
invalidates), so `best()` over 10,000 runs costs a dict lookup after the first call.
"""

from __future__ import annotations

import bisect
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
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.storage import StoreError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from store.storage import AtomicJSONStorage
    from store.workspace import Workspace

_PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Distributions whose versions decide what a run means (looked up by metadata, never imported).
TRACKED_PACKAGES: tuple[str, ...] = (
    "forecast-console", "torch", "numpy", "pandas", "scipy", "transformers", "peft",
    "chronos-forecasting", "kronos-finance", "toto-ts", "gluonts", "tinydb",
)

_first = itemgetter(0)
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


def _refuse_mixed_windows(metric: str, runs: Iterable[Mapping[str, Any]]) -> None:
    """StoreError when `metric` (val_*/test_*) of one symbol comes from runs scored on different
    windows: such numbers are not comparable, so nothing ranks them together."""
    span = "val" if metric.startswith("val_") else "test" if metric.startswith("test_") else None
    if span is None:
        return
    seen: dict[str, tuple[str, str]] = {}
    for r in runs:
        key = _window_key(r, span)
        if key is None:
            continue
        sym = str(r.get("symbol"))
        if sym in seen and seen[sym][0] != key:
            raise StoreError(
                f"{metric} of {sym} was computed on different {span} windows in run {seen[sym][1]} "
                f"({seen[sym][0]}) and run {r.get('run_id')} ({key}); they are not comparable: "
                "re-validate with the same windows, or filter by model")
        seen.setdefault(sym, (key, str(r.get("run_id"))))


class TrackerMixin:
    """Run logging and queries; mixed into Store (which provides the attributes below)."""

    workspace: Workspace
    readonly: bool
    _lock: threading.RLock
    _storage: AtomicJSONStorage
    _memo: dict[Any, Any]
    _rmemo_src: Any
    _env_src: Any
    _env_idx: dict[str, dict[str, Any]]

    # provided by Store
    def _check_model(self, model: str) -> str:  # pragma: no cover
        raise NotImplementedError
    def _check_symbol(self, symbol: str) -> str:  # pragma: no cover
        raise NotImplementedError
    def _require_writable(self, what: str) -> None:  # pragma: no cover
        raise NotImplementedError
    def _table(self, name: str) -> dict[str, dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError
    def _insert(self, name: str, doc: dict[str, Any]) -> int:  # pragma: no cover
        raise NotImplementedError

    # --- indexes over runs -------------------------------------------------------------------
    # Derived data (run_id index, ranked lists) is valid for one runs-table object: TinyDB builds a
    # new table dict on every runs write, and a reader gets new ones when the file changed. The
    # writer's log_run updates the indexes in place instead of dropping them, so best() stays a
    # lookup even right after a write.
    def _rmemo(self) -> dict[Any, Any]:
        runs = self._table("runs")
        if self._rmemo_src is not runs:
            self._memo.clear()
            self._rmemo_src = runs
        return self._memo

    def _run_index(self) -> dict[str, dict[str, Any]]:
        """run_id → stored record (not a copy)."""
        memo = self._rmemo()
        idx = memo.get("run_index")
        if idx is None:
            idx = memo["run_index"] = {r["run_id"]: r for r in self._table("runs").values()}
        return idx

    def _env_index(self) -> dict[str, dict[str, Any]]:
        envs = self._table("envs")
        if self._env_src is not envs:
            self._env_idx = {e["key"]: e.get("versions", {}) for e in envs.values()}
            self._env_src = envs
        return self._env_idx

    def _on_run_added(self, before: dict[str, Any], doc_id: int) -> None:
        """Fold a just-inserted run into the indexes built on the previous table (writer only)."""
        if self._rmemo_src is not before:
            return  # nothing valid to update; next query rebuilds
        runs = self._table("runs")
        rec = runs[str(doc_id)]
        for key, val in list(self._memo.items()):
            if key == "run_index":
                val[rec["run_id"]] = rec
            elif key[0] in ("ranked", "best"):
                _, metric, model, symbol, minimize = key
                v = rec["metrics"].get(metric)
                if v is None or (model is not None and rec["model"] != model) \
                        or (symbol is not None and rec["symbol"] != symbol):
                    continue
                k = ((v if minimize else -v), rec["created_at"])
                if key[0] == "best":
                    if not val or k < val[0]:
                        self._memo[key] = (k, rec)
                    continue
                keys, recs = val
                i = bisect.bisect_right(keys, k)
                keys.insert(i, k)
                recs.insert(i, rec)
        self._rmemo_src = runs

    def _public_run(self, rec: dict[str, Any]) -> dict[str, Any]:
        out = fast_copy(rec)
        out["versions"] = dict(self._env_index().get(rec.get("env") or "", {}))
        return out

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
            if ekey not in self._env_index():
                self._insert("envs", {"key": ekey, "versions": versions, "first_seen": time.time()})
            now = time.time()
            run_id = new_run_id(model)
            while run_id in self._run_index():  # 32 random bits: practically never loops
                run_id = new_run_id(model)
            rec = {
                "run_id": run_id, "model": model, "symbol": symbol, "hyperparams": hp, "metrics": mets,
                "checkpoint": str(checkpoint) if checkpoint is not None else None,
                "training_time": training_time, "notes": notes, "seed": seed, "job_id": job_id,
                "git_commit": git_commit(), "env": ekey, "created_at": now,
                "created": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "extra": ex,
            }
            before = self._table("runs")
            doc_id = self._insert("runs", rec)
            self._on_run_added(before, doc_id)
            return run_id

    # --- reading -----------------------------------------------------------------------------
    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._run_index().get(run_id)
            return self._public_run(rec) if rec is not None else None

    def _select(self, model: str | None, symbol: str | None, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        if model is not None:
            model = self._check_model(model)
        if symbol is not None:
            symbol = self._check_symbol(symbol)
        since = filters.get("since")
        rest = {k: v for k, v in filters.items() if k != "since"}
        out = []
        for r in self._table("runs").values():
            if model is not None and r["model"] != model:
                continue
            if symbol is not None and r["symbol"] != symbol:
                continue
            if since is not None and r["created_at"] < since:
                continue
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

    def _ranked(self, metric: str, model: str | None, symbol: str | None, minimize: bool) -> list[dict[str, Any]]:
        """Runs with a finite `metric`, best first (ties: older first). Indexed per runs table."""
        model = self._check_model(model) if model is not None else None
        symbol = self._check_symbol(symbol) if symbol is not None else None
        memo = self._rmemo()
        key = ("ranked", metric, model, symbol, bool(minimize))
        hit = memo.get(key)
        if hit is None:
            sign = 1.0 if minimize else -1.0
            pairs = []
            for r in self._table("runs").values():
                v = r["metrics"].get(metric)
                if v is None or (model is not None and r["model"] != model) \
                        or (symbol is not None and r["symbol"] != symbol):
                    continue
                pairs.append(((sign * v, r["created_at"]), r))
            pairs.sort(key=_first)
            _refuse_mixed_windows(metric, [p[1] for p in pairs])
            hit = memo[key] = ([p[0] for p in pairs], [p[1] for p in pairs])
        return hit[1]

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
            for r in self._ranked(metric, model, symbol, minimize):
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
            # One pass (no sort) when cold; kept up to date by log_run afterwards.
            model = self._check_model(model) if model is not None else None
            symbol = self._check_symbol(symbol) if symbol is not None else None
            memo = self._rmemo()
            key = ("best", metric, model, symbol, bool(minimize))
            if key not in memo:
                sign = 1.0 if minimize else -1.0
                found: tuple[Any, Any] | tuple[()] = ()
                for r in self._table("runs").values():
                    v = r["metrics"].get(metric)
                    if v is None or (model is not None and r["model"] != model) \
                            or (symbol is not None and r["symbol"] != symbol):
                        continue
                    k = (sign * v, r["created_at"])
                    if not found or k < found[0]:
                        found = (k, r)
                _refuse_mixed_windows(metric, [r for r in self._table("runs").values()
                                               if r["metrics"].get(metric) is not None
                                               and (model is None or r["model"] == model)
                                               and (symbol is None or r["symbol"] == symbol)])
                memo[key] = found
            hit = memo[key]
            return self._public_run(hit[1]) if hit else None

    def compare(
        self, run_ids: Iterable[str] | None = None, model: str | None = None, symbol: str | None = None,
        metrics: Iterable[str] | None = None, sort_by: str | None = None,
    ) -> pd.DataFrame:
        """One row per run: ids, model, symbol, metrics and hyperparameters (columns `hp.<name>`)."""
        import pandas as pd

        with self._lock:
            if run_ids is not None:
                idx = self._run_index()
                recs = []
                for rid in run_ids:
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
            allruns = list(self._table("runs").values())
            lines = ["# forecast-console report", "",
                     f"Workspace: `{self.workspace.root}`  ",
                     f"Runs: {len(allruns)}; generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}", ""]
            groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for r in allruns:
                groups.setdefault((r["model"], r["symbol"]), []).append(r)
            lines += [f"## Best run per model and symbol (chosen on `{metric}`, reported on `{test_metric}`)", ""]
            rows = []
            for (m, s) in sorted(groups):
                b = self.best(metric, m, s)
                if b is None:
                    rows.append([m, s, len(groups[(m, s)]), None, None, None])
                else:
                    rows.append([m, s, len(groups[(m, s)]), b["run_id"], b["metrics"].get(metric),
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
