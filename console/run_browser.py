"""The run browser's data: one light row per tracked run, a run's detail, and table export.

Why a module of its own (not ConsoleServices): the Runs screen reads every run of the ledger (10k
in the bench) and must stay cheap; these functions take the read-only store and return typed
rows, run on the console's I/O thread, and import nothing heavy. Numbers keep their window spec
("val 12w"): a metric without it is not comparable with its neighbours, so the row says "?w".
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from engine.curve_file import curve_path, read_curve
from store.records import ComparisonRow, Pick, Promotion, RunRecord
from store.run_listing import ListedRun
from store.run_listing import windows_label as windows_label
from store.tracker import md_table

#: Loss points read from a run's curve.jsonl for the detail chart (the newest ones).
CURVE_MAX_POINTS = 4000


class RunRow(NamedTuple):
    """One line of the Runs screen (raw values: the screen formats and sorts them).

    A tuple of plain values: the garbage collector stops tracking such a tuple after its first
    pass, so the 10k rows of a big ledger add nothing to the full collections that stall the
    console's loop (as objects they would be 10k more to scan, ~1/8 of the console's heap)."""

    run_id: str
    model: str
    symbol: str
    horizon: int | None
    preset: str | None
    kind: str  # the job kind that logged it (train, validate, sweep …), "—" when the job is gone
    state: str  # that job's state
    job_id: str | None
    created_at: float
    duration_s: float | None  # training time, else the job's wall time
    val_mae_pct: float | None
    val_windows: str
    test_mae_pct: float | None
    test_windows: str
    val_loss: float | None
    used: str  # "pick", "made pick", "promoted", some of them, or "" (see `_used`)

    def haystack(self) -> str:
        """What the filter matches words against."""
        return " ".join(str(x) for x in (self.run_id, self.model, self.symbol, self.preset, self.kind,
                                         self.state, self.job_id, self.used, f"h={self.horizon}")).lower()

    def matches(self, words: Sequence[str]) -> bool:
        hay = self.haystack()
        return all(w in hay for w in words)


@dataclass
class RunsData:
    rows: list[RunRow] = field(default_factory=list)
    picks: list[Pick] = field(default_factory=list)
    comparisons: list[ComparisonRow] = field(default_factory=list)
    promotions: list[Promotion] = field(default_factory=list)
    total: int = 0  # runs in the ledger (more than `rows` when only the newest were read)


def promoted_run_ids(promotions: Iterable[Promotion]) -> set[str]:
    """Runs a promotion used (the audit's run id, or the promoted document's source run)."""
    out: set[str] = set()
    for p in promotions:
        if p.action != "promote":
            continue
        if p.run_id:
            out.add(p.run_id)
        src = (p.content or {}).get("source")
        if isinstance(src, Mapping) and src.get("run_id"):
            out.add(str(src["run_id"]))
    return out


def _used(run: ListedRun, picks_by_run: Mapping[str, list[Pick]],
          picks_by_job: Mapping[tuple[str, str, str], list[Pick]], promoted: set[str]) -> str:
    """"pick" (a current pick's source run: its adapter), "made pick" (the run of the job that set a
    current pick), "promoted"; a pick at another horizon than the run's own says which ("pick h=32").
    Short, because the Runs table has to fit it in 120 columns beside the run's H."""
    source = picks_by_run.get(run.run_id)
    made = picks_by_job.get((run.job_id or "", run.model, run.symbol)) if picks_by_job else None
    if source is None and made is None and run.run_id not in promoted:
        return ""  # most runs: nothing uses them

    def at(p: Pick) -> str:
        return "" if p.horizon == run.horizon else f" h={p.horizon}"

    bits = [f"pick{at(p)}" for p in source or ()]
    bits += [f"made pick{at(p)}" for p in made or ()]
    if run.run_id in promoted:
        bits.append("promoted")
    return ", ".join(dict.fromkeys(bits))


def _job_key(doc: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(doc.get("job_id") or ""), str(doc.get("model")), str(doc.get("symbol")))


def run_row(run: ListedRun, used: str) -> RunRow:
    """A Runs-screen row of a listed run: the job's kind/state ("—" when it is gone) and the
    duration (training time, else the job's wall time)."""
    dur = run.training_time
    if dur is None and isinstance(run.started_at, int | float) and isinstance(run.finished_at, int | float):
        dur = float(run.finished_at) - float(run.started_at)
    return RunRow(
        run_id=run.run_id, model=run.model, symbol=run.symbol, horizon=run.horizon, preset=run.preset,
        kind=str(run.kind or "—"), state=str(run.state or "—"), job_id=run.job_id, created_at=run.created_at,
        duration_s=dur, val_mae_pct=run.val_mae_pct, val_windows=run.val_windows, test_mae_pct=run.test_mae_pct,
        test_windows=run.test_windows, val_loss=run.val_loss, used=used,
    )


def load_runs(store: Any, newest: int | None = None) -> RunsData:
    """Every run in the ledger (or the `newest` n) as a RunRow (oldest first), with the decisions
    that name runs and how many runs there are.

    Runs come from `Store.listed_runs` (each run's table cells, stored with the run, and its
    job's kind/state/times): no run document is decoded."""
    if store is None:
        return RunsData()
    picks: list[Pick] = store.picks()
    promos: list[Promotion] = store.promotions()
    comps: list[ComparisonRow] = store.comparisons()
    rows = rows_of(store.listed_runs(newest), picks, promos)
    total = len(rows) if newest is None else store.run_count()
    return RunsData(rows=rows, picks=picks, comparisons=comps, promotions=promos, total=total)


def rows_of(runs: Iterable[ListedRun], picks: Iterable[Pick], promos: Iterable[Promotion]) -> list[RunRow]:
    """RunRows of listed runs, each with what uses it (picks, promotions)."""
    by_run: dict[str, list[Pick]] = {}
    by_job: dict[tuple[str, str, str], list[Pick]] = {}
    for p in picks:
        if p.source_run:
            by_run.setdefault(p.source_run, []).append(p)
        if p.job_id:
            by_job.setdefault((p.job_id, p.model, p.symbol), []).append(p)
    promoted = promoted_run_ids(promos)
    return [run_row(r, _used(r, by_run, by_job, promoted)) for r in runs]


@dataclass
class RunDetail:
    run: RunRecord
    curve: list[dict[str, Any]]
    artifacts: list[tuple[str, int]]  # (path relative to the run folder, bytes)
    run_dir: str | None  # the run's own folder, relative to the workspace
    checkpoint: str | None  # the checkpoint/adapter it made or loaded, relative to the workspace
    checkpoint_exists: bool
    used_by: list[str]  # human lines: picks, comparison rows, promotions that name this run


def run_folder(workspace: Path, doc: Mapping[str, Any]) -> Path | None:
    """The run's own artifact folder (`extra.run_dir`: a training run's curve, adapter, config), or None
    (a validate run only names the adapter it loaded, as its checkpoint)."""
    raw = (doc.get("extra") or {}).get("run_dir")
    if not raw:
        return None
    p = Path(str(raw))
    p = p if p.is_absolute() else workspace / p
    return p if p.is_dir() else None


def shown_path(workspace: Path, path: str | Path) -> str:
    """A path inside the workspace relative to it (short, and the same on every machine)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path(workspace).resolve()))
    except (ValueError, OSError):
        return str(p)


def _artifacts(run_dir: Path | None) -> list[tuple[str, int]]:
    if run_dir is None:
        return []
    out = []
    for f in sorted(run_dir.rglob("*")):
        if f.is_file():
            try:
                out.append((str(f.relative_to(run_dir)), f.stat().st_size))
            except OSError:
                continue
    return out[:40]


def load_detail(store: Any, workspace: Path, run_id: str, data: RunsData) -> RunDetail | None:
    doc = store.get_run(run_id) if store is not None else None
    if doc is None:
        return None
    run = RunRecord.model_validate(doc)
    folder = run_folder(workspace, doc)
    used: list[str] = []
    for p in data.picks:
        if p.source_run == run_id:
            used.append(f"current pick {p.model}/{p.symbol} h={p.horizon} ({p.preset}) uses its adapter")
        elif p.job_id and (p.job_id, p.model, p.symbol) == _job_key(doc):
            used.append(f"its job {p.job_id} set the current pick {p.model}/{p.symbol} h={p.horizon} ({p.preset})")
    for c in data.comparisons:
        if c.source_run == run_id:
            used.append(f"comparison {c.symbol} h={c.horizon}: {c.model}{' ★ winner' if c.winner else ''}")
    for e in data.promotions:
        if e.action == "promote" and run_id in promoted_run_ids([e]):
            used.append(f"promoted {e.model}/{e.symbol} h={e.horizon} at {e.at_iso} by {e.by or '?'}")
    ck = run.checkpoint
    ck_path = Path(ck) if ck else None
    if ck_path is not None and not ck_path.is_absolute():
        ck_path = workspace / ck_path
    return RunDetail(run=run, curve=read_curve(curve_path(folder), CURVE_MAX_POINTS) if folder else [],
                     artifacts=_artifacts(folder), run_dir=shown_path(workspace, folder) if folder else None,
                     checkpoint=shown_path(workspace, ck) if ck else None,
                     checkpoint_exists=bool(ck_path and ck_path.exists()), used_by=used)


# ---------------------------------------------------------------------------------------------- export
EXPORT_HEADERS = ("run_id", "model", "symbol", "horizon", "preset", "kind", "state", "val_mae_pct", "val_windows",
                  "test_mae_pct", "test_windows", "val_loss", "duration_s", "used", "job_id", "created")


def _export_values(r: RunRow) -> list[Any]:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.created_at))
    return [r.run_id, r.model, r.symbol, r.horizon, r.preset, r.kind, r.state, r.val_mae_pct, r.val_windows,
            r.test_mae_pct, r.test_windows, r.val_loss, r.duration_s, r.used, r.job_id, created]


def export_text(rows: Sequence[RunRow], fmt: str) -> str:
    """The rows as CSV or a markdown table (the same table `forecast-console report` writes)."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(EXPORT_HEADERS)
        for r in rows:
            w.writerow(["" if v is None else v for v in _export_values(r)])
        return buf.getvalue()
    if fmt == "md":
        return md_table(list(EXPORT_HEADERS), [_export_values(r) for r in rows]) + "\n"
    raise ValueError(f"unknown export format {fmt!r}; choose csv or md")


def export_rows(rows: Sequence[RunRow], fmt: str, reports_dir: Path, now: float | None = None) -> Path:
    """Write the rows to `<workspace>/reports/runs-<UTC time>.<csv|md>` atomically; returns the path."""
    from store.atomic import atomic_write_text

    text = export_text(rows, fmt)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    path = Path(reports_dir) / f"runs-{stamp}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path
