"""validate: search inference parameters per model and symbol on validation, report on test.

Why it is fast: one model load per job (`ModelCache`), every window of a span in one batched call,
and one sample draw per group of "draw parameters" (context, temperature, ...) and `num_samples`,
reused for every aggregation; where a model's draws nest (`Forecaster.draw_group`) every smaller
`num_samples` is a prefix of the largest draw, so the group costs one model call (`SampleBank`).

Why it cannot leak: candidates are ranked on validation metrics only (`select_best`); the test
windows are forecast once, for the winner, after the choice. The test forecasts never feed back.

Spec params (all optional): horizon (default: the horizon of the fine-tuned run that is loaded, else
16; an explicit value always wins), context (128 tiny / 512 pretrained), preset (tiny),
mode (quick|full), val_windows / test_windows (default: every origin of the span up to
engine.evaluation.DEFAULT_MAX_WINDOWS, spread over the span beyond that), stride (1), dayfirst, seed (0),
selection_metric (mae_pct), dm_alpha (0.05: the pick records whether it beats naive on validation),
val_rows/test_rows (span sizes), and grid overrides: num_samples, aggregations, temperature, top_p,
top_k, max_context, clip, contexts, methods (naive).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine import evaluation as ev
from engine import forecast_record
from engine.forecasters.base import AGGREGATIONS, DrawGroup, aggregate, grid_values
from engine.task_params import ValidateParams
from engine.tasks.report import fmt
from store.forecasts import ForecastModel
from store.records import Pick

if TYPE_CHECKING:
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext

DEFAULT_HORIZON = 16


def resolve_horizon(explicit: Any, run: Mapping[str, Any] | None) -> tuple[int, str]:
    """(horizon, why): an explicit horizon wins, else the loaded run's, else DEFAULT_HORIZON.

    Why: the planner may train an adapter at H=64; scoring it at 16 would misreport it."""
    if explicit not in (None, "", 0):
        return int(explicit), "given"
    h = ev.run_horizon(run)
    if h is not None:
        return h, f"from run {ev.run_id_of(run)}"
    return DEFAULT_HORIZON, "default"


def default_context(preset: str, model: str | None = None) -> int:
    """The context a job uses when it sets none: the model's own per-preset context (its adapter)."""
    from engine.forecasters.base import Forecaster
    from engine.forecasters.registry import adapter_class

    cls = adapter_class(model) if model else Forecaster
    return cls.preset_contexts.get(preset, Forecaster.preset_contexts["pretrained"])


def search_space(
    model: str, *, context: int, preset: str = "tiny", mode: str = "quick", overrides: Mapping[str, Any] | None = None,
) -> list[DrawGroup]:
    """The model's validation grid (declared by its adapter class); `quick` keeps tiny-preset jobs to
    seconds, `full` is the large grid. Unknown modes and aggregations are refused here, for every model."""
    from engine.forecasters.registry import ModelLoadError, adapter_class

    if mode not in ("quick", "full"):
        raise ev.EvaluationError(f"unknown validate mode {mode!r}; choose quick or full")
    o = dict(overrides or {})
    bad = [a for a in grid_values(o, "aggregations", []) if a not in AGGREGATIONS]
    if bad:
        raise ev.EvaluationError(f"unknown aggregation(s) {bad}; choose from: {', '.join(AGGREGATIONS)}")
    try:
        cls = adapter_class(model)
        return cls.search_space(context=context, preset=preset, full=mode == "full", overrides=o)
    except (ModelLoadError, NotImplementedError):
        raise ev.EvaluationError(f"no validation grid for model {model!r}") from None


def search(
    bank: ev.SampleBank, setup: ev.EvalSetup, groups: Sequence[DrawGroup], *, seed: int = 0,
    naive_val: Any | None = None, progress: Any | None = None, cancelled: Any | None = None,
    banks: Mapping[str, ev.SampleBank] | None = None,
) -> list[ev.Candidate]:
    """Score every candidate on the VALIDATION windows only (test windows are not an argument)."""
    val = setup.val
    cands: list[ev.Candidate] = []
    for gi, g in enumerate(groups):
        if cancelled is not None and cancelled():
            break
        b = banks[g.method] if (banks is not None and g.method) else bank
        w = ev.truncate_context(val, g.context)
        # largest first: when the model's draws nest, that one model call serves every smaller size
        draws = {n: b.draw("val", w, n, g.params, seed) for n in sorted(set(g.sample_sizes), reverse=True)}
        for n in g.sample_sizes:
            draw = draws[n]
            samples = draw.samples
            for how in g.aggregations:
                point = aggregate(samples, how)
                metrics = ev.score(val, samples, point, naive_val)
                cfg: dict[str, Any] = {"num_samples": n, "aggregation": how, **g.params}
                if g.context is not None:
                    cfg["context"] = g.context
                if g.method:
                    cfg["method"] = g.method
                metrics["latency_per_forecast_s"] = draw.latency_s / max(1, val.n)
                cands.append(ev.Candidate(config=cfg, validation=metrics, cost=float(n) * float(g.context or 1)))
        if progress is not None:
            progress(gi + 1, len(groups))
    return cands


def validate_symbol(
    models: ev.ModelCache, model: str, setup: ev.EvalSetup, *, adapter_run: Mapping[str, Any] | None,
    mode: str, overrides: Mapping[str, Any], seed: int, metric: str, preset: str,
    progress: Any | None = None, cancelled: Any | None = None, alpha: float = ev.DEFAULT_DM_ALPHA,
    keep: Callable[[list[tuple[ForecastModel, forecast_record.Outputs]], str], Any] | None = None,
) -> dict[str, Any] | None:
    """Search on validation, report the winner on test; returns a `picks` row (None if cancelled).

    `keep` receives the winner's (and naive's) per-window forecasts on both spans (engine.forecast_record);
    the winner's validation forecasts come from the search's cached draw, not a new model call."""
    adapter = adapter_run.get("checkpoint") if adapter_run else None
    groups = search_space(model, context=setup.context, preset=preset, mode=mode, overrides=overrides)
    ref = ev.naive_reference(setup, metric)  # naive's variant, chosen on validation: the DM reference
    naive_val = ref.val_point
    banks = None
    if model == "naive":
        banks = {g.method: models.bank("naive", method=g.method) for g in groups if g.method}
        bank = next(iter(banks.values()))
    else:
        bank = models.bank(model, adapter=adapter)
    t0 = time.perf_counter()
    cands = search(bank, setup, groups, seed=seed, naive_val=naive_val, progress=progress,
                   cancelled=cancelled, banks=banks)
    if not cands or (cancelled is not None and cancelled()):
        return None
    search_s = time.perf_counter() - t0
    best = ev.select_best(cands, metric)
    # ---- the choice is made; only now are the test windows forecast, once, for the winner ----
    wbank = banks[best.config["method"]] if banks is not None else bank
    out = ev.run_config(wbank, "test", setup.test, best.config, seed=seed)
    test_metrics = ev.score(setup.test, out.samples, out.point, ref.test_point)
    test_metrics["latency_per_forecast_s"] = out.latency_per_forecast_s
    if keep is not None:
        vout = ev.run_config(wbank, "val", setup.val, best.config, seed=seed)  # the search's draw (cached)
        kept: list[tuple[ForecastModel, forecast_record.Outputs]] = [
            (ForecastModel(name=model, preset=preset, source="pick", config=best.config,
                           validation=best.validation, test=test_metrics),
             {"val": (vout.point, vout.samples), "test": (out.point, out.samples)})]
        if model != "naive":
            kept.append((ForecastModel(name="naive", preset=preset, source="selected on val",
                                       config={"method": ref.method}, validation=ref.validation, test=ref.test),
                         {"val": (ref.val_point, ref.val_point[:, None, :]),
                          "test": (ref.test_point, ref.test_point[:, None, :])}))
        keep(kept, ref.method)
    top = [{"config": c.config, "value": c.validation.get(metric)} for c in ev.rank(cands, metric)[:5]]
    beats, why = (False, f"naive ({ref.method} chosen on validation)") if model == "naive" else \
        ev.naive_decision(best.validation, alpha)
    info = setup.windows_info()
    return Pick.model_validate({
        "model": model,
        "symbol": setup.symbol,
        "horizon": setup.horizon,
        "config": best.config,
        "selection_metric": metric,
        "selection_span": "val",
        "validation": best.validation,
        "test": test_metrics,
        "naive": {"method": ref.method, "validation": ref.validation, "test": ref.test},
        "beats_naive": beats,
        "decision_note": why,
        "spans": info["spans"],
        "seed": seed,
        "context": setup.context,
        "val_windows": info["val_windows"],
        "test_windows": info["test_windows"],
        "source_run": ev.run_id_of(adapter_run),
        "adapter": str(adapter) if adapter else None,
        "weights": (dict(models.weights) or None) if preset == "pretrained" and model != "naive" else None,
        "preset": preset,
        "candidates": len(cands),
        "model_calls": bank.calls if banks is None else sum(b.calls for b in banks.values()),
        "search_s": search_s,
        "top": top,
    }).to_doc()


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """Validate `spec.model` on every symbol of the spec; returns picks (+ a tracker run per pick)."""
    prm = ValidateParams.of(spec.params)
    p = prm.model_dump()  # the grid overrides and window settings, defaults filled in
    model = spec.model or "naive"
    preset = prm.preset
    context = prm.context or default_context(preset, spec.model)
    mode, seed, metric = prm.mode, prm.seed, prm.selection_metric
    alpha = prm.dm_alpha or ev.DEFAULT_DM_ALPHA
    ev.metric_value({metric: 1.0}, metric)  # unknown metric -> clear error before any work
    search_space(model, context=context, preset=preset, mode=mode, overrides=p)  # bad grid -> error now
    store = ev.open_store_readonly(ctx.workspace)
    models = ev.job_models(prm, ctx.device)
    picks: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    horizons: dict[str, int] = {}
    n_sym = len(spec.symbols)
    try:
        for si, symbol in enumerate(spec.symbols):
            if ctx.cancelled():
                break
            adapter_run = ev.latest_checkpoint_run(store, model, symbol)
            horizon, h_why = resolve_horizon(prm.horizon, adapter_run)
            horizons[symbol] = horizon
            setup = ev.setup_from_params(symbol, p, horizon=horizon, context=context, data_dirs=ctx.data_dirs or None)
            vs = ev.window_spec(setup.val, setup.spans)
            ctx.events.log(
                f"validate {model} {symbol}: {setup.val.n} val / {setup.test.n} test windows (stride {vs['stride']}, "
                f"{vs['rows_covered']}/{vs['span_rows']} val rows scored), h={horizon} ({h_why}), "
                f"context={context}, adapter={'run ' + str(ev.run_id_of(adapter_run)) if adapter_run else 'none (base ' + preset + ')'}"
            )

            def prog(done: int, total: int, _si: int = si, _sym: str = symbol) -> None:
                ctx.events.progress(_si + done / max(1, total), n_sym, stage=f"validate {_sym}")

            def keep(kept: list[tuple[ForecastModel, forecast_record.Outputs]], method: str,
                     _s: ev.EvalSetup = setup) -> None:
                forecast_record.record(ctx.workspace, _s, ctx.job_id, "validate", kept, naive_method=method,
                                       log=ctx.events.log)

            pick = validate_symbol(models, model, setup, adapter_run=adapter_run, mode=mode, overrides=p,
                                   seed=seed, metric=metric, preset=preset, progress=prog, cancelled=ctx.cancelled,
                                   alpha=alpha, keep=keep)
            if pick is None:
                skipped[symbol] = "cancelled"
                break
            picks.append(pick)
            v, t = pick["validation"], pick["test"]
            ctx.events.log(f"{model} {symbol}: picked {ev.config_key(pick['config'])} "
                           f"(val {metric}={fmt(v.get(metric))}, test {metric}={fmt(t.get(metric))}; "
                           f"{pick['candidates']} candidates)")
            ctx.events.metric(f"{symbol}.val_{metric}", v.get(metric) or float("nan"))
            runs.append({
                "model": model, "symbol": symbol, "hyperparams": {**pick["config"], "preset": preset, "horizon": horizon},
                "metrics": {**{f"val_{k}": x for k, x in v.items()}, **{f"test_{k}": x for k, x in t.items()}},
                "checkpoint": pick["adapter"], "notes": f"validate ({mode}); chosen on val, reported on test",
                "seed": seed,
                # which windows the val_*/test_* numbers are on: only runs with equal specs are comparable
                "extra": {"val_windows": pick["val_windows"], "test_windows": pick["test_windows"],
                          "context": setup.context, "horizon": horizon},
            })
    finally:
        if store is not None:
            store.close()
    hs = set(horizons.values())
    return {
        "picks": picks,
        "runs": runs,
        "summary": {
            "kind": "validate", "model": model, "preset": preset, "mode": mode,
            # one int when every symbol shares it (the usual case), else None and see `horizons`
            "horizon": hs.pop() if len(hs) == 1 else (None if hs else resolve_horizon(prm.horizon, None)[0]),
            "horizons": horizons,
            "selection": f"chosen on validation by {metric}; test scored once for the winner",
            "picked": {p_["symbol"]: ev.config_key(p_["config"]) for p_ in picks},
            "cancelled": bool(ctx.cancelled()), "skipped": skipped, "model_loads": models.loads,
        },
    }
