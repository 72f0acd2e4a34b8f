"""regression: current pick vs previous pick vs naive baseline, same metric, same windows.

Why re-evaluate instead of reading stored numbers: picks made at different times may have been
scored on different windows or horizons, and numbers from different windows or horizons are not
comparable (a 1-step return MAE says nothing about a 64-step MAE%). Here all three are forecast on one set of test windows at one horizon and scored by
`engine.metrics`. This is monitoring, not selection: flags and proposals are read from the VALIDATION
windows only (a loop that followed test-driven proposals would select on test); test numbers are
shown beside them. A flagged row only proposes retrain + validate jobs (JobSpec dicts ready to submit, one action away);
a flagged `naive` pick proposes nothing (it cannot be trained) and says so in its reason.

Spec params: horizon, context, preset, models (default every model with a pick), threshold_pct
(5: worse by more than this % of the reference is flagged), metric (mae_pct), seed, val_windows,
test_windows, stride, dayfirst, span (val: the only value; flags and proposals read validation only).
Names, types, bounds and defaults: engine.task_params.RegressionParams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine import evaluation as ev
from engine.jobs import JobSpec
from engine.models import FOUNDATION_MODELS
from engine.task_params import RegressionParams
from engine.tasks import report as rep
from engine.tasks.compare import adapter_for
from engine.tasks.validate import DEFAULT_HORIZON, default_context
from store.records import Pick, RegressionRow

if TYPE_CHECKING:
    from engine.tasks.context import TaskContext


def worse_by_pct(value: float | None, reference: float | None) -> float | None:
    """How much higher (worse) `value` is than `reference`, in % of the reference."""
    imp = ev.improvement_pct(value, reference)
    return None if imp is None else -imp


def proposed_jobs(model: str, symbol: str, *, preset: str, horizon: int, context: int, reason: str) -> list[dict[str, Any]]:
    """A retrain and a re-validate job for one (model, symbol), as JobSpec dicts."""
    params = {"preset": preset, "horizon": horizon, "context": context}
    train = JobSpec.create("train", [symbol], model, params=params)
    val = JobSpec.create("validate", [symbol], model, params=params)
    return [{**train.to_dict(), "why": reason}, {**val.to_dict(), "why": f"re-validate after {train.id}"}]


def _eval(cache: ev.ModelCache, store: Any, setup: ev.EvalSetup, model: str, pick: Pick,
          seed: int, ref: ev.NaiveReference) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """(validation, test) metrics of one pick on the shared windows; a calibrated pick is cross-fitted
    on validation (its calibration was fitted there)."""
    adapter, _ = adapter_for(store, model, setup.symbol, pick)
    bank = cache.bank(model, adapter=adapter, method=pick.config.get("method"))
    vo = ev.run_config(bank, "val", setup.val, pick.config, seed=seed, crossfit=True)
    to = ev.run_config(bank, "test", setup.test, pick.config, seed=seed)
    return (ev.score(setup.val, vo.samples, vo.point, ref.val_point),
            ev.score(setup.test, to.samples, to.point, ref.test_point))


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    prm = RegressionParams.of(spec.params)  # span (val only) and threshold_pct >= 0: checked by the model
    p = prm.model_dump()
    preset = prm.preset
    horizon = prm.horizon or DEFAULT_HORIZON
    context = prm.context or default_context(preset)
    seed, metric, threshold, span = prm.seed, prm.metric, prm.threshold_pct, prm.span
    ev.metric_value({metric: 1.0}, metric)
    requested = prm.models or ([spec.model] if spec.model else list(FOUNDATION_MODELS))
    store = ev.open_store_readonly(ctx.workspace)
    cache = ev.job_models(prm, ctx.device)
    rows: list[dict[str, Any]] = []
    try:
        for symbol in ctx.each_symbol(spec.symbols, "regression"):
            setup = ev.setup_from_params(symbol, p, horizon=horizon, context=context, data_dirs=ctx.data_dirs or None)
            ref = ev.naive_reference(setup, metric)
            base, base_test = ref.validation.get(metric), ref.test.get(metric)
            specs = setup.windows_info()
            for model in requested:
                cur = store.pick(model, symbol, horizon, preset) if store is not None else None
                if store is None or not cur:
                    continue
                prev = store.previous_pick(model, symbol, horizon, preset)
                try:
                    cur_v, cur_t = _eval(cache, store, setup, model, cur, seed, ref)
                    prev_v, prev_t = _eval(cache, store, setup, model, prev, seed, ref) if prev else ({}, {})
                except Exception as exc:  # noqa: BLE001 - report it, do not hide the other rows
                    rows.append({"symbol": symbol, "model": model, "horizon": horizon, "metric": metric,
                                 "flagged": False, "reason": f"could not evaluate: {type(exc).__name__}: {exc}",
                                 "proposed_jobs": []})
                    continue
                c, pv = cur_v.get(metric), prev_v.get(metric) if prev else None
                d_prev = worse_by_pct(c, pv)
                d_base = worse_by_pct(c, base)
                worse_prev = d_prev is not None and d_prev > threshold
                worse_base = d_base is not None and d_base > threshold
                reasons = []
                if worse_prev:
                    reasons.append(f"validation {metric} {d_prev:.1f}% worse than the previous pick")
                if worse_base:
                    reasons.append(f"validation {metric} {d_base:.1f}% worse than naive ({ref.method})")
                flagged = worse_prev or worse_base
                trainable = model != "naive"  # naive has no weights: a train job for it can only fail
                if flagged and not trainable:
                    reasons.append("naive has nothing to train: no jobs proposed; re-run validate or compare by hand")
                rows.append({
                    "symbol": symbol, "model": model, "horizon": horizon, "metric": metric, "span": "val",
                    "current": c, "previous": pv, "baseline": base,
                    "test_current": cur_t.get(metric), "test_previous": prev_t.get(metric) if prev else None,
                    "test_baseline": base_test,
                    "delta_vs_previous_pct": d_prev, "delta_vs_baseline_pct": d_base,
                    "worse_than_previous": worse_prev, "worse_than_baseline": worse_base, "flagged": flagged,
                    "threshold_pct": threshold, "reason": "; ".join(reasons) or "ok",
                    "current_config": cur.config, "previous_config": prev.config if prev else None,
                    "windows": specs["val_windows"], "test_windows": specs["test_windows"],
                    "proposed_jobs": proposed_jobs(model, symbol, preset=preset, horizon=horizon, context=context,
                                                   reason="; ".join(reasons)) if flagged and trainable else [],
                })
        ctx.events.progress(len(spec.symbols), len(spec.symbols), stage="regression done")
    finally:
        if store is not None:
            store.close()
    rows = [RegressionRow.model_validate(r).to_doc() for r in rows]  # the store's record, checked here
    flagged_rows = [r for r in rows if r["flagged"]]
    md = "\n".join([
        f"# Regression check at horizon {horizon}", "",
        f"Current pick vs previous pick vs naive (its variant chosen on validation) on the same windows, by {metric}. "
        f"Flags and proposals come from the VALIDATION windows only (worse by more than {threshold:g}% of the "
        "reference); test numbers are shown beside them and never drive a retrain. Nothing is selected here; "
        "flagged rows propose a retrain + validate job.", "", rep.regression_markdown(rows) if rows else "_no picks to check_", "",
        *[f"- propose: `{j['kind']}` {r['model']} {r['symbol']}" for r in flagged_rows for j in r["proposed_jobs"]],
    ]) + "\n"
    paths = rep.write_report(ctx.reports_dir, f"regression-{ctx.job_id}", {"rows": rows}, md)
    ctx.events.artifact("regression_markdown", paths["markdown"])
    for r in flagged_rows:
        ctx.events.log(f"regression {r['model']} {r['symbol']}: {r['reason']}", "warning")
    return {
        "regressions": rows,
        "summary": {"kind": "regression", "horizon": horizon, "metric": metric, "span": span,
                    "checked": len(rows), "flagged": [f"{r['model']}/{r['symbol']}" for r in flagged_rows],
                    "report": str(paths["markdown"])},
    }
