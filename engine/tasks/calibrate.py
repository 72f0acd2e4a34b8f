"""calibrate: affine scale/bias on a model's predicted returns, fitted on validation, judged on test.

Model: r' = scale * r + bias with r = point / last_close - 1 (least squares on the validation
windows' returns, `engine.evaluation.fit_affine`). The keep/drop decision is made on validation and
never on the windows a calibration was fitted on: the validation windows are split into contiguous
blocks and each block is calibrated by the fit on the windows outside it whose targets do not
overlap it (`engine.evaluation.crossfit_calibration`); the calibration is kept when that
cross-fitted validation score beats the uncalibrated one. The test span is then scored with and
without calibration and the outcome is stated plainly either way.

A kept calibration is emitted as an updated pick (same config + `calibration`, fitted on all
validation windows, which is what test and trading use); compare and regression score it on
validation cross-fitted again, so its validation numbers never come from its own fitting windows.
With `require_test_improvement=true` the test result can also veto the calibration (it can only fall
back to the uncalibrated pick); the pick then says `selection_span: "val+test veto"`.

Spec params: horizon, context, preset, seed, val_windows, test_windows, stride, dayfirst,
metric (mae_pct), require_test_improvement (false).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import evaluation as ev
from engine.task_params import CalibrateParams
from engine.tasks import report as rep
from engine.tasks.compare import adapter_for, default_config
from engine.tasks.validate import DEFAULT_HORIZON, default_context
from store.records import Pick

if TYPE_CHECKING:
    from engine.data import Windows
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext


fit_affine = ev.fit_affine  # the one definition lives in engine.evaluation (compare cross-fits with it)


def _metric(w: Windows, samples: np.ndarray, point: np.ndarray, naive: np.ndarray, metric: str) -> float | None:
    return ev.score(w, samples, point, naive).get(metric)


def calibrate_one(
    bank: ev.SampleBank, setup: ev.EvalSetup, config: Mapping[str, Any], *, seed: int, metric: str,
    require_test_improvement: bool, naive: ev.NaiveReference | None = None,
) -> dict[str, Any]:
    base_cfg = {k: v for k, v in config.items() if k != "calibration"}
    val, test = setup.val, setup.test
    ref = naive or ev.naive_reference(setup, metric)
    vo = ev.run_config(bank, "val", val, base_cfg, seed=seed)
    # the decision: every validation window calibrated by a fit on OTHER windows (cross-fitted), so
    # the calibration is judged on windows it was not fitted on; compare scores it the same way
    cp, cs = ev.crossfit_calibration(vo.point, vo.samples, val)
    judge_before = _metric(val, vo.samples, vo.point, ref.val_point, metric)
    judge_after = _metric(val, cs, cp, ref.val_point, metric)
    val_improved = judge_after is not None and judge_before is not None and judge_after < judge_before
    # the parameters applied to new data (test, trading): fitted on every validation window
    cal = ev.fit_affine(vo.point, val.targets, val.last_close)
    # ---- decision made on validation; now the test span is scored with and without ----
    to = ev.run_config(bank, "test", test, base_cfg, seed=seed)
    nt = ref.test_point
    test_before = ev.score(test, to.samples, to.point, nt)
    test_after = ev.score(test, ev.calibrate_samples(to.samples, test.last_close, cal),
                          ev.apply_calibration(to.point, test.last_close, cal), nt)
    tb, ta = test_before.get(metric), test_after.get(metric)
    test_improved = ta is not None and tb is not None and ta < tb
    kept = val_improved and (test_improved or not require_test_improvement)
    if kept and test_improved:
        verdict = "kept: improved on cross-fitted validation and on test"
    elif kept:
        verdict = ("kept on validation, but test got WORSE: the calibration did not generalise "
                   "(re-run with require_test_improvement=true to drop such calibrations)")
    elif val_improved:
        verdict = "dropped: improved on cross-fitted validation but test got worse (test used as a veto)"
    else:
        verdict = "dropped: did not improve on cross-fitted validation" + (
            " (it would have improved test; not used for the choice)" if test_improved else "; test did not improve either")
    return {
        "calibration": cal, "kept": kept, "verdict": verdict,
        "val_crossfit_before": judge_before, "val_crossfit_after": judge_after, "val_improved": val_improved,
        "test_before": test_before, "test_after": test_after, "test_improved": test_improved,
        "val_after": ev.score(val, cs, cp, ref.val_point), "metric": metric, "base_config": base_cfg,
        "naive_method": ref.method, "naive": {"method": ref.method, "validation": ref.validation, "test": ref.test},
    }


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    prm = CalibrateParams.of(spec.params)
    p = prm.model_dump()
    model = spec.model or "naive"
    preset = prm.preset
    horizon = prm.horizon or DEFAULT_HORIZON
    context = prm.context or default_context(preset)
    seed, metric, veto = prm.seed, prm.metric, prm.require_test_improvement
    ev.metric_value({metric: 1.0}, metric)
    store = ev.open_store_readonly(ctx.workspace)
    cache = ev.job_models(prm, ctx.device)
    picks: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        for symbol in ctx.each_symbol(spec.symbols, "calibrate"):
            setup = ev.setup_from_params(symbol, p, horizon=horizon, context=context, data_dirs=ctx.data_dirs or None)
            pick = store.pick(model, symbol, horizon, preset) if store is not None else None
            config = dict(pick.config) if pick else default_config(model, preset)
            adapter, run_id = adapter_for(store, model, symbol, pick)
            bank = cache.bank(model, adapter=adapter, method=config.get("method"))
            res = calibrate_one(bank, setup, config, seed=seed, metric=metric, require_test_improvement=veto)
            res["from_pick"] = bool(pick)
            results[symbol] = res
            ctx.events.log(f"calibrate {model} {symbol}: scale={res['calibration']['scale']:.4g} "
                           f"bias={res['calibration']['bias']:.3g}: {res['verdict']} (test {metric} "
                           f"{rep.fmt(res['test_before'].get(metric))} -> {rep.fmt(res['test_after'].get(metric))})",
                           "info" if res["kept"] == res["test_improved"] else "warning")
            if res["kept"]:
                info = setup.windows_info()
                picks.append(Pick.model_validate({
                    "model": model, "symbol": symbol, "config": {**res["base_config"], "calibration": res["calibration"]},
                    "horizon": horizon, "selection_metric": metric,
                    "selection_span": "val+test veto" if veto else "val",
                    "validation": res["val_after"], "test": res["test_after"], "spans": info["spans"],
                    "context": setup.context, "val_windows": info["val_windows"], "test_windows": info["test_windows"],
                    "source_run": run_id, "adapter": adapter, "preset": preset, "seed": seed,
                    "naive": res["naive"],
                    "calibrated": {"verdict": res["verdict"], "test_before": res["test_before"].get(metric)},
                }).to_doc())
    finally:
        if store is not None:
            store.close()
    rows = [[s, r["calibration"]["scale"], r["calibration"]["bias"], r["val_crossfit_before"], r["val_crossfit_after"],
             r["test_before"].get(metric), r["test_after"].get(metric), r["kept"], r["verdict"]] for s, r in results.items()]
    md = "\n".join([
        f"# Calibration of {model} at horizon {horizon}", "",
        "Affine scale/bias on predicted returns; kept only if it improves validation when every window is "
        f"calibrated by a fit on other windows (cross-fitted){' and test (test used as a veto)' if veto else ''}. Test is reported either way.", "",
        rep.md_table(["symbol", "scale", "bias", f"val (cross-fitted) {metric} before", "after", f"test {metric} before",
                      "after", "kept", "verdict"], rows), "",
    ])
    paths = rep.write_report(ctx.reports_dir, f"calibrate-{ctx.job_id}", {"results": results}, md)
    ctx.events.artifact("calibrate_markdown", paths["markdown"])
    return {"picks": picks, "summary": {
        "kind": "calibrate", "model": model, "horizon": horizon, "test_used_as_veto": veto,
        "verdicts": {s: r["verdict"] for s, r in results.items()}, "report": str(paths["markdown"])}}
