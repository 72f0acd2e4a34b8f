"""calibrate: affine scale/bias on a model's predicted returns, fitted on validation, judged on test.

Model: r' = scale * r + bias with r = point / last_close - 1 (least squares on the validation
windows' returns). The keep/drop decision is made on validation: fit on the earlier validation
windows, judge on the later ones (a gap of `horizon` windows between them so their targets do not
overlap). The test span is then scored with and without calibration and the outcome is stated
plainly either way: the prior art's calibration made held-out MAE worse and nobody said so.

A kept calibration is emitted as an updated pick (same config + `calibration`, refitted on all
validation windows), so compare/regression/promotion use it. With `require_test_improvement=true`
the test result can also veto the calibration (conservative: it can only fall back to the
uncalibrated pick) and the summary says the test span was used as a veto.

Spec params: horizon, context, preset, seed, val_windows (48), test_windows, holdout_frac (0.34),
metric (mae_pct), require_test_improvement (false).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import evaluation as ev
from engine.tasks import report as rep
from engine.tasks.compare import adapter_for, default_config
from engine.tasks.validate import DEFAULT_HORIZON, default_context

if TYPE_CHECKING:
    from engine.data import Windows
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext


def fit_affine(point: np.ndarray, targets: np.ndarray, last: np.ndarray) -> dict[str, float]:
    """Least-squares scale/bias mapping predicted returns to realised returns."""
    last = np.asarray(last, dtype=np.float64)[:, None]
    r_hat = (np.asarray(point) / last - 1.0).reshape(-1)
    r = (np.asarray(targets) / last - 1.0).reshape(-1)
    ok = np.isfinite(r_hat) & np.isfinite(r)
    r_hat, r = r_hat[ok], r[ok]
    if r.size < 2 or float(np.var(r_hat)) < 1e-18:
        return {"scale": 1.0, "bias": float(np.mean(r - r_hat)) if r.size else 0.0}
    a, b = np.polyfit(r_hat, r, 1)
    return {"scale": float(a), "bias": float(b)}


def split_for_holdout(n: int, horizon: int, frac: float) -> tuple[np.ndarray, np.ndarray]:
    """(fit, judge) window indices: earlier vs later windows with a horizon-sized gap."""
    n_judge = max(1, int(round(n * frac)))
    n_fit = n - n_judge - horizon
    if n_fit < 2:
        raise ev.EvaluationError(
            f"calibration needs more validation windows: {n} windows at horizon {horizon} leave {n_fit} to fit "
            f"(raise val_windows or lower holdout_frac)")
    return np.arange(n_fit), np.arange(n - n_judge, n)


def _metric(w: Windows, samples: np.ndarray, point: np.ndarray, naive: np.ndarray, metric: str) -> float | None:
    return ev.score(w, samples, point, naive).get(metric)


def calibrate_one(
    bank: ev.SampleBank, setup: ev.EvalSetup, config: Mapping[str, Any], *, seed: int, metric: str, holdout_frac: float,
    require_test_improvement: bool,
) -> dict[str, Any]:
    base_cfg = {k: v for k, v in config.items() if k != "calibration"}
    val, test = setup.val, setup.test
    vo = ev.run_config(bank, "val", val, base_cfg, seed=seed)
    fit_idx, judge_idx = split_for_holdout(val.n, setup.horizon, holdout_frac)
    cal_fit = fit_affine(vo.point[fit_idx], val.targets[fit_idx], val.last_close[fit_idx])
    vj = val.subset(judge_idx)
    pj, sj = vo.point[judge_idx], vo.samples[judge_idx]
    nj = ev.naive_point(vj)
    judge_before = _metric(vj, sj, pj, nj, metric)
    judge_after = _metric(vj, ev.calibrate_samples(sj, vj.last_close, cal_fit),
                          ev.apply_calibration(pj, vj.last_close, cal_fit), nj, metric)
    val_improved = judge_after is not None and judge_before is not None and judge_after < judge_before
    # final parameters: refit on every validation window (the decision above already used held-out data)
    cal = fit_affine(vo.point, val.targets, val.last_close)
    # ---- decision made on validation; now the test span is scored with and without ----
    to = ev.run_config(bank, "test", test, base_cfg, seed=seed)
    nt = ev.naive_point(test)
    test_before = ev.score(test, to.samples, to.point, nt)
    test_after = ev.score(test, ev.calibrate_samples(to.samples, test.last_close, cal),
                          ev.apply_calibration(to.point, test.last_close, cal), nt)
    tb, ta = test_before.get(metric), test_after.get(metric)
    test_improved = ta is not None and tb is not None and ta < tb
    kept = val_improved and (test_improved or not require_test_improvement)
    if kept and test_improved:
        verdict = "kept: improved on held-out validation and on test"
    elif kept:
        verdict = ("kept on validation, but test got WORSE: the calibration did not generalise "
                   "(re-run with require_test_improvement=true to drop such calibrations)")
    elif val_improved:
        verdict = "dropped: improved on held-out validation but test got worse (test used as a veto)"
    else:
        verdict = "dropped: did not improve on held-out validation" + (
            " (it would have improved test; not used for the choice)" if test_improved else "; test did not improve either")
    val_after = ev.score(val, ev.calibrate_samples(vo.samples, val.last_close, cal),
                         ev.apply_calibration(vo.point, val.last_close, cal), ev.naive_point(val))
    return {
        "calibration": cal, "calibration_fit_part": cal_fit, "kept": kept, "verdict": verdict,
        "val_holdout_before": judge_before, "val_holdout_after": judge_after, "val_improved": val_improved,
        "test_before": test_before, "test_after": test_after, "test_improved": test_improved,
        "val_after": val_after, "metric": metric, "base_config": base_cfg,
    }


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    p = dict(spec.params)
    model = spec.model or "naive"
    preset = str(p.get("preset", "tiny"))
    horizon = int(p.get("horizon") or DEFAULT_HORIZON)
    context = int(p.get("context") or default_context(preset))
    seed = int(p.get("seed", 0))
    metric = str(p.get("metric", ev.DEFAULT_SELECTION_METRIC))
    frac = float(p.get("holdout_frac", 0.34))
    veto = bool(p.get("require_test_improvement", False))
    if not 0.0 < frac < 1.0:
        raise ev.EvaluationError(f"holdout_frac must be in (0, 1), got {frac}")
    ev.metric_value({metric: 1.0}, metric)
    store = ev.open_store_readonly(ctx.workspace)
    cache = ev.ModelCache(preset=preset, device=ctx.device)
    picks: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    try:
        for si, symbol in enumerate(spec.symbols):
            if ctx.cancelled():
                break
            ctx.events.progress(si, len(spec.symbols), stage=f"calibrate {symbol}")
            setup = ev.build_setup(
                symbol, horizon=horizon, context=context, data_dirs=ctx.data_dirs or None,
                val_windows=p.get("val_windows", 48), test_windows=p.get("test_windows", 32),
                stride=int(p.get("stride", 1)), val_rows=p.get("val_rows"), test_rows=p.get("test_rows"),
            )
            pick = store.pick(model, symbol) if store is not None else None
            config = dict(pick["config"]) if pick else default_config(model, preset)
            adapter, run_id = adapter_for(store, model, symbol, pick)
            bank = cache.bank(model, adapter=adapter, method=config.get("method"))
            res = calibrate_one(bank, setup, config, seed=seed, metric=metric, holdout_frac=frac,
                                require_test_improvement=veto)
            res["from_pick"] = bool(pick)
            results[symbol] = res
            ctx.events.log(f"calibrate {model} {symbol}: scale={res['calibration']['scale']:.4g} "
                           f"bias={res['calibration']['bias']:.3g}: {res['verdict']} (test {metric} "
                           f"{rep.fmt(res['test_before'].get(metric))} -> {rep.fmt(res['test_after'].get(metric))})",
                           "info" if res["kept"] == res["test_improved"] else "warning")
            if res["kept"]:
                picks.append({
                    "model": model, "symbol": symbol, "config": {**res["base_config"], "calibration": res["calibration"]},
                    "selection_metric": metric, "selection_span": "val",
                    "validation": res["val_after"], "test": res["test_after"], "windows": setup.windows_info(),
                    "source_run": run_id, "adapter": adapter, "preset": preset,
                    "calibrated": {"verdict": res["verdict"], "test_before": res["test_before"].get(metric)},
                })
    finally:
        if store is not None:
            store.close()
    rows = [[s, r["calibration"]["scale"], r["calibration"]["bias"], r["val_holdout_before"], r["val_holdout_after"],
             r["test_before"].get(metric), r["test_after"].get(metric), r["kept"], r["verdict"]] for s, r in results.items()]
    md = "\n".join([
        f"# Calibration of {model} at horizon {horizon}", "",
        "Affine scale/bias on predicted returns, fitted on validation; kept only if it improves held-out "
        f"validation windows{' and test (test used as a veto)' if veto else ''}. Test is reported either way.", "",
        rep.md_table(["symbol", "scale", "bias", f"val-holdout {metric} before", "after", f"test {metric} before",
                      "after", "kept", "verdict"], rows), "",
    ])
    paths = rep.write_report(ctx.reports_dir, f"calibrate-{ctx.job_id}", {"results": results}, md)
    ctx.events.artifact("calibrate_markdown", paths["markdown"])
    return {"picks": picks, "summary": {
        "kind": "calibrate", "model": model, "horizon": horizon, "test_used_as_veto": veto,
        "verdicts": {s: r["verdict"] for s, r in results.items()}, "report": str(paths["markdown"])}}
