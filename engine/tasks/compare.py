"""compare: every chosen model + naive persistence on identical windows at horizon H.

Each model runs with its current pick (made on validation by the validate job) or, when it has
none, with a default config (marked `source="default"`). Naive's variant is chosen on validation
like any model. The winner, the runner-up and the top-k ensemble members are chosen on the
VALIDATION windows, and a model wins only when it beats naive there significantly (one-sided DM,
`dm_alpha`, default 0.05), else the decision is naive and the row says why; the reported numbers are
the TEST windows, scored once. Improvement vs naive and vs the runner-up and the DM result vs naive
(statistic, two-sided p, one-sided p "better than naive") are test-span numbers from `engine.metrics`.

Spec params: horizon (default: the most common horizon among the compared models' picks / fine-tuned
runs for the symbol, else 16; an explicit value always wins; models whose pick or adapter was made at
another horizon are re-scored at the chosen one on the shared windows and named in the job log), context (128 tiny / 512 pretrained), preset, models (list; default the
spec's model, else every model with a pick for the symbol, else toto+chronos2+kronos), val_windows,
test_windows (default: every origin up to engine.evaluation.DEFAULT_MAX_WINDOWS), stride (1), dayfirst,
seed, selection_metric (mae_pct), top_k (2; 0 = no ensemble row), dm_alpha (0.05).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import ensembles, forecast_record
from engine import evaluation as ev
from engine.models import FOUNDATION_MODELS
from engine.task_params import CompareParams
from engine.tasks import report as rep
from engine.tasks.validate import DEFAULT_HORIZON, default_context
from store.forecasts import ForecastModel
from store.records import ComparisonRow, Pick

if TYPE_CHECKING:
    from engine.jobs import JobSpec
    from engine.tasks.context import TaskContext


def default_config(model: str, preset: str = "tiny") -> dict[str, Any]:
    """What a model runs with before it was validated (its adapter declares it; tables say 'default')."""
    from engine.forecasters.registry import ModelLoadError, adapter_class

    try:
        return adapter_class(model).default_config(preset)
    except (ModelLoadError, NotImplementedError):
        raise ev.EvaluationError(f"no default config for model {model!r}") from None


def adapter_for(store: Any | None, model: str, symbol: str, pick: Pick | None) -> tuple[str | None, str | None]:
    """(adapter path, run id): the pick's own source run if it has a checkpoint, else the latest one."""
    if model == "naive":
        return None, None
    if pick and pick.adapter and Path(pick.adapter).exists():
        return pick.adapter, pick.source_run
    if pick and pick.source_run and store is not None:
        r = store.get_run(pick.source_run)
        if r and r.get("checkpoint") and Path(str(r["checkpoint"])).exists():
            return str(r["checkpoint"]), pick.source_run
    r = ev.latest_checkpoint_run(store, model, symbol)
    return (str(r["checkpoint"]), ev.run_id_of(r)) if r else (None, None)


def source_horizon(store: Any | None, model: str, symbol: str) -> int | None:
    """The horizon a model's pick (else its latest fine-tuned run) for `symbol` was made at."""
    if store is None or model == "naive":
        return None
    pick = store.pick(model, symbol)
    h = ev.pick_horizon(pick)
    if h is None:
        h = ev.run_horizon(ev.latest_checkpoint_run(store, model, symbol))
    return h


def choose_horizon(explicit: Any, store: Any | None, models: Sequence[str], symbol: str) -> tuple[int, str, dict[str, int]]:
    """(horizon, why, {model: its own horizon} for models re-scored at another one).

    Every model must be scored on the same windows, so one horizon per symbol: the explicit one, else
    the most common among the picks/runs being compared (ties: the first model's), else the default."""
    own = {m: h for m in models if (h := source_horizon(store, m, symbol)) is not None}
    if explicit not in (None, "", 0):
        h, why = int(explicit), "given"
    elif own:
        h = Counter(own.values()).most_common(1)[0][0]
        agree = sorted(m for m, x in own.items() if x == h)
        why = f"from the picks/runs of {', '.join(agree)}"
        if len(set(own.values())) > 1:
            why += " (most common)"
    else:
        h, why = DEFAULT_HORIZON, "default: no pick or fine-tuned run records a horizon"
    return h, why, {m: x for m, x in own.items() if x != h}


def models_for(spec_model: str | None, requested: Sequence[str] | None, store: Any | None, symbol: str) -> list[str]:
    if requested:
        return [m for m in dict.fromkeys(requested) if m != "naive"]
    if spec_model and spec_model != "naive":
        return [spec_model]
    if store is not None:
        picked = [m for m in FOUNDATION_MODELS if store.pick(m, symbol)]
        if picked:
            return picked
    return list(FOUNDATION_MODELS)


def compare_symbol(
    cache: ev.ModelCache, store: Any | None, setup: ev.EvalSetup, models: Sequence[str], *, preset: str,
    seed: int, metric: str, top_k: int, log: Any = None, alpha: float = ev.DEFAULT_DM_ALPHA,
) -> dict[str, Any]:
    """Rows (one per model + naive [+ ensemble]) for one symbol; choices on val, numbers on test.

    Naive's variant is chosen on validation first (`ev.naive_reference`) and is the DM reference of
    every model. The winner is the best model by validation `metric` among those significantly
    better than naive on validation (`ev.naive_decision`); when none is, the winner is naive. A
    calibrated pick is scored on validation with its cross-fitted calibration (never on the windows
    its calibration was fitted on).
    """
    ref = ev.naive_reference(setup, metric)
    naive_val, naive_test = ref.val_point, ref.test_point
    entries: dict[str, dict[str, Any]] = {
        "naive": {"config": {"method": ref.method, "num_samples": 1, "aggregation": "mean"}, "source": "selected on val",
                  "source_run": None, "adapter": None, "validation": ref.validation, "test": ref.test, "latency_s": 0.0,
                  "naive_variants": ref.variants},
    }
    val_out: dict[str, ev.ConfigOutput] = {}
    test_out: dict[str, ev.ConfigOutput] = {}
    failures: dict[str, str] = {}
    for model in models:
        pick = store.pick(model, setup.symbol, setup.horizon, preset) if store is not None else None
        config = dict(pick.config) if pick else default_config(model, preset)
        adapter, run_id = adapter_for(store, model, setup.symbol, pick)
        try:
            bank = cache.bank(model, adapter=adapter, method=config.get("method"))
            vo = ev.run_config(bank, "val", setup.val, config, seed=seed, crossfit=True)
            to = ev.run_config(bank, "test", setup.test, config, seed=seed)
        except Exception as exc:  # noqa: BLE001 - one broken model must not hide the others' comparison
            failures[model] = f"{type(exc).__name__}: {exc}"
            if log:
                log(f"compare {setup.symbol}: {model} failed: {failures[model]}", "warning")
            continue
        val_out[model], test_out[model] = vo, to
        entries[model] = {
            "config": config, "source": "pick" if pick else "default", "source_run": run_id, "adapter": adapter,
            "validation": ev.score(setup.val, vo.samples, vo.point, naive_val),
            "test": ev.score(setup.test, to.samples, to.point, naive_test),
            "latency_s": to.latency_per_forecast_s,
        }
    # ---- choices: validation only ----
    verdicts = {m: ev.naive_decision(e["validation"], alpha) for m, e in entries.items() if m != "naive"}
    cands = [ev.Candidate(config={"model": m}, validation=e["validation"]) for m, e in entries.items()]
    ranked = [c.config["model"] for c in ev.rank(cands, metric)]
    eligible = [m for m in ranked if m != "naive" and verdicts[m][0]]
    winner = eligible[0] if eligible else "naive"
    runner_up = next((m for m in ranked if m != winner), None)
    if winner == "naive":
        best_model = next((m for m in ranked if m != "naive"), None)
        decision = (f"no model beats naive significantly: keep naive ({best_model}: {verdicts[best_model][1]})"
                    if best_model else "no model to compare: keep naive")
    else:
        decision = f"{winner}: {verdicts[winner][1]}"
    members: list[str] = []
    if top_k and len([m for m in entries if m != "naive"]) >= 2:
        members = ensembles.top_k_members(
            {m: e["validation"].get(metric) for m, e in entries.items() if m != "naive"}, top_k)
    if len(members) >= 2:
        vp, vs = ensembles.combine({m: val_out[m].point for m in members}, {m: val_out[m].samples for m in members}, members)
        tp, ts = ensembles.combine({m: test_out[m].point for m in members}, {m: test_out[m].samples for m in members}, members)
        name = f"ensemble_top{len(members)}"
        entries[name] = {
            "config": {"members": members, "combine": "mean of points; pooled samples"}, "source": "ensemble",
            "source_run": None, "adapter": None,
            "validation": ev.score(setup.val, vs, vp, naive_val), "test": ev.score(setup.test, ts, tp, naive_test),
            "latency_s": sum(entries[m]["latency_s"] for m in members),
        }
    # ---- the forecasts scored, for the Forecast view (engine.forecast_record) ----
    forecasts = [(ForecastModel(name="naive", preset=preset, source="selected on val",
                                config=entries["naive"]["config"], validation=ref.validation, test=ref.test),
                  {"val": (naive_val, naive_val[:, None, :]), "test": (naive_test, naive_test[:, None, :])})]
    forecasts += [(ForecastModel(name=m, preset=preset, source=entries[m]["source"], config=entries[m]["config"],
                                 validation=entries[m]["validation"], test=entries[m]["test"]),
                   {"val": (val_out[m].point, val_out[m].samples), "test": (test_out[m].point, test_out[m].samples)})
                  for m in val_out]
    if len(members) >= 2:
        e = entries[f"ensemble_top{len(members)}"]
        forecasts.append((ForecastModel(name=f"ensemble_top{len(members)}", preset=preset, source="ensemble",
                                        config=e["config"], validation=e["validation"], test=e["test"]),
                          {"val": (vp, vs), "test": (tp, ts)}))
    # ---- report: test numbers ----
    naive_test_m = entries["naive"]["test"].get(metric)
    ru_test = entries[runner_up]["test"].get(metric) if runner_up else None
    specs = setup.windows_info()
    rows = []
    for model, e in entries.items():
        t, v = e["test"], e["validation"]
        rows.append(ComparisonRow.model_validate({
            "symbol": setup.symbol, "horizon": setup.horizon, "model": model, "preset": preset, "seed": seed,
            "validation": v, "test": t, "adapter": e["adapter"],
            "weights": (dict(cache.weights) or None) if preset == "pretrained" and model != "naive" else None,
            "latency_s": e["latency_s"], "winner": model == winner, "runner_up": model == runner_up,
            "improvement_vs_naive_pct": ev.improvement_pct(t.get(metric), naive_test_m),
            "improvement_vs_runner_up_pct": ev.improvement_pct(t.get(metric), ru_test) if model == winner and runner_up else None,
            "config": e["config"], "source": e["source"], "source_run": e["source_run"],
            "selected_on": "val", "selection_metric": metric, "dm_alpha": alpha,
            "decision_note": decision if model == winner else (verdicts[model][1] if model in verdicts else None),
            "windows": specs["test_windows"], "val_windows": specs["val_windows"], "context": setup.context,
            "spans": specs["spans"],
        }).to_doc())
    rows.sort(key=lambda r: (not r["winner"], ranked.index(r["model"]) if r["model"] in ranked else len(ranked)))
    return {"rows": rows, "winner": winner, "runner_up": runner_up, "ensemble": members, "failures": failures,
            "decision": decision, "naive_method": ref.method, "windows": specs, "forecasts": forecasts}


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    prm = CompareParams.of(spec.params)  # dm_alpha's bounds, top_k >= 0: checked by the model
    p = prm.model_dump()
    preset = prm.preset
    context = prm.context or default_context(preset)
    seed, metric, top_k = prm.seed, prm.selection_metric, prm.top_k
    alpha = prm.dm_alpha or ev.DEFAULT_DM_ALPHA
    requested = prm.models
    if requested is not None:
        from engine.models import validate_model

        requested = [validate_model(m) for m in requested]
    ev.metric_value({metric: 1.0}, metric)
    store = ev.open_store_readonly(ctx.workspace)
    cache = ev.job_models(prm, ctx.device)
    all_rows: list[dict[str, Any]] = []
    per_symbol: dict[str, Any] = {}
    try:
        for symbol in ctx.each_symbol(spec.symbols, "compare"):
            models = models_for(spec.model, requested, store, symbol)
            horizon, h_why, rescored = choose_horizon(prm.horizon, store, models, symbol)
            ctx.events.log(f"compare {symbol}: h={horizon} ({h_why})")
            if rescored:
                ctx.events.log(f"compare {symbol}: re-scored at h={horizon} on the shared windows although made at "
                               + ", ".join(f"{m} h={x}" for m, x in sorted(rescored.items())), "warning")
            setup = ev.setup_from_params(symbol, p, horizon=horizon, context=context, data_dirs=ctx.data_dirs or None)
            ctx.events.log(f"compare {symbol}: {setup.val.n} val / {setup.test.n} test windows "
                           f"(stride {ev.window_spec(setup.test)['stride']})")
            res = compare_symbol(cache, store, setup, models, preset=preset, seed=seed, metric=metric, top_k=top_k,
                                 log=lambda m, lvl="info": ctx.events.log(m, lvl), alpha=alpha)
            forecast_record.record(ctx.workspace, setup, ctx.job_id, "compare", res.pop("forecasts"),
                                   naive_method=res["naive_method"], log=ctx.events.log)
            all_rows.extend(res["rows"])
            per_symbol[symbol] = {**{k: v for k, v in res.items() if k != "rows"}, "horizon": horizon,
                                  "horizon_source": h_why, "rescored_at_other_horizon": rescored}
            w = next(r for r in res["rows"] if r["winner"])
            ctx.events.log(f"compare {symbol} h={horizon}: winner {res['winner']} ({res['decision']}); test "
                           f"MAE% {rep.fmt(w['test']['mae_pct'])}, vs naive {rep.fmt(w['improvement_vs_naive_pct'])}%, "
                           f"DM vs naive {ev.dm_label(w['test']['dm_stat'], w['test']['dm_p_two_sided'])}")
        ctx.events.progress(len(spec.symbols), len(spec.symbols), stage="compare done")
    finally:
        if store is not None:
            store.close()
    hs = {v["horizon"] for v in per_symbol.values()}
    one_horizon = hs.pop() if len(hs) == 1 else None  # None: symbols differ, see symbols[s]["horizon"]
    summary = {
        "kind": "compare", "horizon": one_horizon, "preset": preset, "selection_metric": metric,
        "protocol": rep.PROTOCOL_NOTE,
        "winners": {s: v["winner"] for s, v in per_symbol.items()}, "symbols": per_symbol,
    }
    md = "\n".join([
        f"# Comparison at horizon {one_horizon if one_horizon is not None else 'per symbol (see rows)'}", "",
        *[f"- {s}: h={v['horizon']} ({v['horizon_source']})" for s, v in per_symbol.items()], "", rep.PROTOCOL_NOTE, "",
        f"Naive's variant (persistence/drift/seasonal) is chosen on validation like any model. A model "
        f"replaces naive only when it is better than naive on validation with one-sided DM p < {alpha:g}; "
        f"otherwise the decision is naive. Improvements are % lower test {metric} than naive / the runner-up "
        "(positive = better); 'DM vs naive' is the test-span DM test (HLN-corrected) with its direction.", "",
        *[f"- {s}: decision {v['winner']}: {v['decision']}" for s, v in per_symbol.items()], "",
        rep.comparison_markdown(all_rows), "",
        *[f"- {s}: model failures: {v['failures']}" for s, v in per_symbol.items() if v["failures"]],
    ]) + "\n"
    paths = rep.write_report(ctx.reports_dir, f"compare-{ctx.job_id}", {"rows": all_rows, "summary": summary}, md)
    for kind, path in paths.items():
        ctx.events.artifact(f"compare_{kind}", path)
    summary["report"] = str(paths["markdown"])
    return {"comparisons": all_rows, "summary": summary}
