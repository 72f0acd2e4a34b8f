"""What a promotion writes: the self-contained hand-off document and the adapter files beside it.

Why self-contained: trading code must be able to run the promoted decision after the workspace is
deleted. So the document carries the decision identity (model, preset, horizon, context), the exact
inference config, the seed and windows it was scored with, the naive comparison, and — for a
fine-tuned model — a copy of the adapter in `hyperparams/<model>/<SYMBOL>/<digest>/` with each
file's sha256. The folder name is a digest of the files, so re-promoting never overwrites the
adapter an older (rollback-able) document points at. Format: docs/HYPERPARAMS_SCHEMA.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from store.atomic import fsync_dir
from store.records import ComparisonRow, Metrics, NaiveScores, Pick
from store.storage import StoreError

TINY_BASE = "tiny preset: the real architecture with seeded random weights (no download)"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def adapter_files(src: Path) -> dict[str, str]:
    """{file name: sha256} of an adapter folder (what a promoted document records)."""
    return {p.name: sha256_file(p) for p in sorted(src.iterdir()) if p.is_file() and not p.name.endswith(".tmp")}


def copy_adapter(src: Path, dest_root: Path) -> dict[str, Any]:
    """Copy the adapter folder `src` under `dest_root/<digest>/` (atomically, idempotently).

    Returns {"dir": "<SYMBOL>/<digest>" relative to the model folder, "files": {name: sha256}}."""
    if not src.is_dir():
        raise StoreError(f"adapter {src} is missing: a fine-tuned decision cannot be promoted without its "
                         "adapter (re-run train + validate, or promote a pick made on base weights)")
    files = adapter_files(src)
    if not files:
        raise StoreError(f"adapter {src} holds no files; nothing was promoted")
    digest = hashlib.sha256("".join(f"{n}:{h};" for n, h in files.items()).encode()).hexdigest()[:16]
    dest = dest_root / digest
    if not (dest.is_dir() and all((dest / n).is_file() and sha256_file(dest / n) == h for n, h in files.items())):
        dest_root.mkdir(parents=True, exist_ok=True)
        tmp = dest_root / f".{digest}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for n in files:
            shutil.copyfile(src / n, tmp / n)
            with open(tmp / n, "rb") as fh:
                os.fsync(fh.fileno())
        if dest.exists():  # a damaged earlier copy: replace it whole
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        fsync_dir(dest_root)
    return {"dir": f"{dest_root.name}/{digest}", "files": files}


def verify_adapter(model_dir: Path, adapter: dict[str, Any]) -> Path:
    """The adapter folder of a promoted document, checked against its recorded hashes."""
    d = model_dir / str(adapter.get("dir", ""))
    files = adapter.get("files") or {}
    if not files or not d.is_dir():
        raise FileNotFoundError(f"promoted adapter folder {d} is missing")
    for n, h in files.items():
        if not (d / n).is_file():
            raise FileNotFoundError(f"promoted adapter file {d / n} is missing")
        if sha256_file(d / n) != h:
            raise ValueError(f"promoted adapter file {d / n} does not match its sha256 in the config")
    return d


def _direction(stat: float | None) -> str | None:
    if stat is None:
        return None
    return "better" if stat < 0 else ("worse" if stat > 0 else "equal")


def naive_block(own: NaiveScores, val: Metrics, test: Metrics) -> dict[str, Any]:
    """Naive persistence on the same windows, and the decision's DM test against it per span."""

    def dm(m: Metrics) -> dict[str, Any]:
        return {"stat": m.dm_stat, "p_two_sided": m.dm_p_two_sided, "p_better": m.dm_p_better,
                "direction": _direction(m.dm_stat)}

    return {"method": own.method, "validation": {"mae_pct": own.validation.mae_pct},
            "test": {"mae_pct": own.test.mae_pct}, "dm": {"validation": dm(val), "test": dm(test)}}


def _decision(rec: Pick | ComparisonRow) -> dict[str, Any]:
    """How the decision was made: where it was chosen, whether it beat naive significantly on
    validation and why, the calibration verdict (picks), the DM threshold (comparisons)."""
    d: dict[str, Any]
    if isinstance(rec, Pick):
        d = {"selection_span": rec.selection_span, "beats_naive": rec.beats_naive, "decision_note": rec.decision_note,
             "calibrated": rec.calibrated.to_doc() if rec.calibrated else None}
    else:
        d = {"selection_span": rec.selected_on, "winner": rec.winner, "decision_note": rec.decision_note,
             "dm_alpha": rec.dm_alpha}
    return {k: v for k, v in d.items() if v is not None}


def _metrics_doc(m: Metrics) -> dict[str, Any]:
    return {k: v for k, v in m.to_doc().items() if v is not None}


def decision_body(rec: Pick | ComparisonRow, naive: NaiveScores, *, kind: str, run: dict[str, Any] | None,
                  workspace_root: Path) -> dict[str, Any]:
    """The document fields of a pick or a comparison row (everything but identity/audit fields)."""
    test_windows = rec.test_windows if isinstance(rec, Pick) else rec.windows
    wins = {"horizon": rec.horizon, "context": rec.context,
            "spans": rec.spans.to_doc() if rec.spans else None,
            "validation": (rec.val_windows.to_doc() if rec.val_windows else None),
            "test": test_windows.to_doc() if test_windows else None}
    adapter = None
    if rec.adapter:
        p = Path(rec.adapter)
        adapter = p if p.is_absolute() else workspace_root / p
    return {
        "preset": rec.preset, "horizon": rec.horizon, "context": rec.context, "seed": rec.seed,
        "config": dict(rec.config), "weights": dict(rec.weights) if rec.weights else None,
        "validation": _metrics_doc(rec.validation), "test": _metrics_doc(rec.test), "windows": wins,
        "naive": naive_block(naive, rec.validation, rec.test),
        "decision": _decision(rec),
        "selection_metric": "val_" + rec.selection_metric.removeprefix("val_"),
        "source": {"kind": kind, "run_id": rec.source_run, "job_id": rec.job_id or (run or {}).get("job_id"),
                   "pick": kind == "pick"},
        "provenance": {"git_commit": (run or {}).get("git_commit"), "versions": (run or {}).get("versions"),
                       "adapter_source": str(adapter) if adapter else None},
        "_adapter_src": adapter,
    }


def attach_adapter(body: dict[str, Any], model_dir: Path, symbol: str) -> None:
    """Copy the body's adapter beside the document and record it (and the base weights)."""
    src = body.pop("_adapter_src", None)
    if src is None:
        body["adapter"] = None
        body["base_weights"] = TINY_BASE if body.get("preset") == "tiny" else (body.get("weights") or {}).get("source")
        return
    body["adapter"] = copy_adapter(Path(src), model_dir / symbol)
    meta_src = None
    with contextlib.suppress(OSError, ValueError):
        import json

        meta_src = json.loads((Path(src) / "adapter_meta.json").read_text()).get("source")
    body["base_weights"] = meta_src or (TINY_BASE if body.get("preset") == "tiny" else None)
