"""Markdown/JSON report helpers for the evaluation jobs (and the pipeline's final report).

Why a module: compare, regression, calibrate and pipeline all write `<workspace>/reports/` files; one
formatter keeps numbers, column order and the "chosen on validation, reported on test" wording
identical everywhere. `run(spec, ctx)` renders the combined report from the store (read-only).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.events import json_ready
from engine.names import validate_name
from store.atomic import atomic_write_text
from store.records import ComparisonRow, parse
from store.workspace import Workspace

if TYPE_CHECKING:
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext

PROTOCOL_NOTE = (
    "Every choice (inference parameters, winner, ensemble members, calibration) was made on the "
    "validation span; the numbers shown are on the test span, scored once after the choice. "
    "All models, naive included, were scored on identical windows."
)


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant digits, None/NaN as 'n/a', bools as yes/no."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.{digits}g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt(x)}" for k, x in v.items())
    return str(v).replace("|", "\\|")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "| " + " | ".join(headers) + " |"
    sep = "|" + "|".join("---" for _ in headers) + "|"
    body = ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_report(reports_dir: Path, name: str, payload: Mapping[str, Any] | None, markdown: str) -> dict[str, Path]:
    """Write `<name>.md` (+ `<name>.json`) and `latest-<kind>` copies; returns the paths written."""
    out: dict[str, Path] = {}
    validate_name("report name", name)  # it becomes a file name under reports/
    md = reports_dir / f"{name}.md"
    _atomic_write(md, markdown)
    out["markdown"] = md
    if payload is not None:
        js = reports_dir / f"{name}.json"
        _atomic_write(js, json.dumps(json_ready(payload), indent=2, sort_keys=True, default=str, allow_nan=False))
        out["json"] = js
    kind = name.split("-", 1)[0]
    _atomic_write(reports_dir / f"latest-{kind}.md", markdown)
    return out


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


COMPARISON_HEADERS: tuple[str, ...] = (
    "symbol", "h", "model", "preset", "winner", "val MAE%", "test MAE%", "windows (val/test)", "test MASE",
    "test CRPS", "test cov80", "DM vs naive (test)", "DM vs naive (val)", "vs naive %", "vs runner-up %",
    "latency s/forecast", "why",
)


def comparison_markdown(rows: Sequence[Mapping[str, Any] | ComparisonRow]) -> str:
    """The comparison table from ComparisonRow records (dicts are validated as such)."""
    from engine.evaluation import dm_label

    recs = [r if isinstance(r, ComparisonRow) else parse(ComparisonRow, r) for r in rows]
    return md_table(list(COMPARISON_HEADERS), [[
        r.symbol, r.horizon, r.model, r.preset, r.winner, r.validation.mae_pct, r.test.mae_pct,
        f"{r.val_windows.count if r.val_windows else '?'}/{r.windows.count if r.windows else '?'}",
        r.test.mase, r.test.crps, r.test.coverage80, dm_label(r.test.dm_stat, r.test.dm_p_two_sided),
        dm_label(r.validation.dm_stat, r.validation.dm_p_two_sided), r.improvement_vs_naive_pct,
        r.improvement_vs_runner_up_pct, r.latency_s, r.decision_note] for r in recs])


REGRESSION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("symbol", "symbol"), ("model", "model"), ("metric", "metric"), ("current", "val current"),
    ("previous", "val previous"), ("baseline", "val naive"), ("delta_vs_previous_pct", "Δ vs previous %"),
    ("delta_vs_baseline_pct", "Δ vs naive %"), ("flagged", "flagged"), ("test_current", "test current (shown only)"),
    ("test_baseline", "test naive"), ("reason", "why"),
)


def regression_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    return md_table([c[1] for c in REGRESSION_COLUMNS], [[r.get(k) for k, _ in REGRESSION_COLUMNS] for r in rows])


def store_report(workspace: Path, title: str = "forecast-console report") -> str:
    """Markdown of the store's current picks, comparisons and the last regression report."""
    from engine.evaluation import open_store_readonly

    lines = [f"# {title}", "", f"Workspace: `{workspace}`  ", f"Generated: {time.strftime('%Y-%m-%d %H:%M:%S')}", "",
             PROTOCOL_NOTE, ""]
    store = open_store_readonly(workspace)
    if store is None:
        return "\n".join([*lines, "_No store yet: run a job first._", ""])
    try:
        picks = store.picks()
        comps = store.comparisons()
        baselines = store.baselines()
    finally:
        store.close()
    lines += ["## Picks (chosen on validation, reported on test)", ""]
    if picks:
        lines.append(md_table(
            ["model", "symbol", "h", "preset", "config", "val MAE%", "test MAE%", "windows (val/test)", "source run"],
            [[p.model, p.symbol, p.horizon, p.preset, p.config, p.validation.mae_pct, p.test.mae_pct,
              f"{p.val_windows.count if p.val_windows else '?'}/{p.test_windows.count if p.test_windows else '?'}",
              p.source_run] for p in picks]))
    else:
        lines.append("_none_")
    lines += ["", "## Comparison (winner chosen on validation; test reported)", ""]
    comps = sorted(comps, key=lambda r: (r.symbol, r.horizon, not r.winner, r.model))
    lines.append(comparison_markdown(comps) if comps else "_none_")
    lines += ["", "## Naive baselines", ""]
    if baselines:
        lines.append("Baseline job windows (all windows of the span); the comparison above re-scores naive on its own windows.")
        lines.append("")
        lines.append(md_table(["symbol", "model", "horizon", "span", "windows", "MAE%"], [
            [b.symbol, b.model, b.horizon, b.span, b.n_windows, b.metrics.mae_pct]
            for b in sorted(baselines, key=lambda b: (b.symbol, b.model, b.horizon))]))
    else:
        lines.append("_none_")
    reg = Workspace(workspace).reports_dir / "latest-regression.md"
    if reg.exists():
        lines += ["", "## Regression (latest)", "", reg.read_text(encoding="utf-8").split("\n", 2)[-1]]
    return "\n".join(lines) + "\n"


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """Render the combined markdown report from the store (the pipeline's last step)."""
    text = store_report(ctx.workspace)
    paths = write_report(ctx.reports_dir, f"report-{stamp()}", None, text)
    ctx.events.artifact("report", paths["markdown"])
    return {"summary": {"kind": "report", "report": str(paths["markdown"])}}
