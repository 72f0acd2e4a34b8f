"""Every run as one row of a table of runs, read without decoding whole run documents.

Why: the Runs screen lists every run of the ledger (10k and more). Decoding each run's whole JSON
document (hyperparameters, every metric, spans, paths) and validating its window specs to show a
dozen cells cost seconds. So each run row of the ledger also holds `listed`: the run's table
cells (`cells`, a flat JSON array of plain values, window specs already reduced to their labels),
computed once when the run is written (and by the ledger migration for older runs). Listing reads
those arrays and the jobs' kind/state/times in one query. The detail of ONE run is still
`Store.get_run`.

The rules that turn a document into cells are here and nowhere else: the horizon is
`extra.horizon` where the run recorded one (even null), else the `horizon` hyperparameter; the
preset is the hyperparameter's, else extra's; numbers are ints/floats (a flag such as `true` is
not a number); a window spec that is not a WindowSpec reads "?w".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from store.record_base import WindowSpec


class ListedRun(NamedTuple):
    """One run as a table of runs shows it, with the job that logged it (None fields: no such job)."""

    run_id: str
    model: str
    symbol: str
    job_id: str | None
    created_at: float
    horizon: int | None
    preset: str | None
    training_time: float | None
    val_mae_pct: float | None
    val_windows: str  # "val 12w", "val ?w"
    test_mae_pct: float | None
    test_windows: str
    val_loss: float | None
    kind: str | None = None  # of the job that logged the run (read with the listing)
    state: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def windows_label(spec: Any, span: str) -> str:
    """"val 12w" from a window spec (a WindowSpec, or one as recorded); "val ?w" when there is none
    (or it is not a WindowSpec)."""
    if isinstance(spec, WindowSpec):
        return spec.short()
    if isinstance(spec, Mapping):
        try:
            return WindowSpec.model_validate(spec).short()
        except ValidationError:
            pass
    return f"{span} ?w"


def label_windows(label: str) -> int | None:
    """The window count in a windows_label (`"val 12w"` → 12); None for `"val ?w"`."""
    count = label.rsplit(" ", 1)[-1].removesuffix("w")
    return int(count) if count.isdigit() else None


def listed_horizon(doc: Mapping[str, Any]) -> int | None:
    """A run's horizon: `extra.horizon` where the run recorded one (even null), else the `horizon`
    hyperparameter; None when neither is an int."""
    h = (doc.get("extra") or {}).get("horizon", (doc.get("hyperparams") or {}).get("horizon"))
    return int(h) if isinstance(h, int) and not isinstance(h, bool) else None


def cells(doc: Mapping[str, Any]) -> list[Any]:
    """The leading fields of a run's ListedRun (all but its job's), from its whole document."""
    extra = doc.get("extra") or {}
    hp = doc.get("hyperparams") or {}
    mets = doc.get("metrics") or {}
    return [str(doc["run_id"]), str(doc["model"]), str(doc["symbol"]), doc.get("job_id"),
            float(doc.get("created_at") or 0.0), listed_horizon(doc),
            str(hp.get("preset") or extra.get("preset") or "") or None,
            _num(doc.get("training_time")),
            _num(mets.get("val_mae_pct")), windows_label(extra.get("val_windows"), "val"),
            _num(mets.get("test_mae_pct")), windows_label(extra.get("test_windows"), "test"),
            _num(mets.get("val_loss"))]


_enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def cells_json(doc: Mapping[str, Any]) -> str:
    """What the ledger stores as a run's `listed`."""
    return _enc(cells(doc))


def listed_run(doc: Mapping[str, Any], job: Mapping[str, Any] | None) -> ListedRun:
    """A run's ListedRun from its whole document and its job's summary (Store.job_summaries)."""
    j = job or {}
    return ListedRun._make([*cells(doc), j.get("kind"), j.get("state"), j.get("started_at"), j.get("finished_at")])


__all__ = ["ListedRun", "cells", "cells_json", "label_windows", "listed_horizon", "listed_run", "windows_label"]
