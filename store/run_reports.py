"""Tables over runs: `compare` (one row per run), `hyperparameter_impact`, the markdown `report`,
and `md_table`, the one markdown table writer (the report's and the Runs screen's export).

Mixed into Store beside TrackerMixin (store/tracker.py), whose run queries these read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from store.storage import StoreError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from store.ledger import Ledger
    from store.workspace import Workspace


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


class RunReportsMixin:
    """Run tables and the report; mixed into Store (which provides the attributes below)."""

    workspace: Workspace
    _lock: threading.RLock

    # provided by Store (TrackerMixin)
    @property
    def _ledger(self) -> Ledger:  # pragma: no cover
        raise NotImplementedError
    def _select(self, model: str | None, symbol: str | None,
                filters: Mapping[str, Any]) -> list[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError
    def best(self, metric: str = "val_mae_pct", model: str | None = None, symbol: str | None = None,
             minimize: bool = True, require_checkpoint: bool = False) -> dict[str, Any] | None:  # pragma: no cover
        raise NotImplementedError

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


__all__ = ["RunReportsMixin", "md_table"]
