"""sweep: hyperparameter search over training settings with Optuna; every trial is a train job.

Modes:
  priority  a handful of research-backed configs (the prior art's per-difficulty recipes), enqueued
  quick     a small grid (lr × LoRA rank)
  full      the whole grid (lr × rank × loss × epochs)
  auto      TPE sampler + median pruner fed with the trials' per-epoch validation loss
`max_runs` caps the number of finished trials in the study (re-running continues, never repeats).

The study lives in `<workspace>/sweeps/<study>.db` (Optuna RDB storage on sqlite), so a sweep
survives restarts: trials left RUNNING by a dead coordinator are re-attached to their train job
(finished → told, still running → waited for, lost → failed). Each trial is submitted as a train
job through a `Runner` (engine.tasks.pipeline): queued, visible, cancellable, recorded by the
engine. Pruning reads the train job's `loss` events (val per epoch), reports them to the trial and
cancels the job when the median pruner says so. The objective is the train run's `val_mae_pct`
(validation span; falls back to its best validation loss).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.jobs import JobSpec
from engine.tasks.pipeline import FINAL, Runner, SpoolRunner

if TYPE_CHECKING:
    import optuna

    from engine.tasks.context import TaskContext

MODES: tuple[str, ...] = ("priority", "quick", "full", "auto")

#: Research-backed starting points (prior art: easy → huber, lower rank, higher lr; hard →
#: heteroscedastic, higher rank, lower lr, more epochs).
PRIORITY_CONFIGS: tuple[dict[str, Any], ...] = (
    {"lr": 3e-4, "lora_rank": 8, "loss": "huber", "epoch_scale": 1.0},
    {"lr": 2e-4, "lora_rank": 12, "loss": "native", "epoch_scale": 1.0},
    {"lr": 1e-4, "lora_rank": 16, "loss": "heteroscedastic", "epoch_scale": 1.5},
    {"lr": 5e-4, "lora_rank": 8, "loss": "native", "epoch_scale": 1.0},
    {"lr": 1e-4, "lora_rank": 8, "loss": "huber", "epoch_scale": 1.5},
)
QUICK_GRID: dict[str, list[Any]] = {"lr": [1e-4, 3e-4], "lora_rank": [8, 16]}
FULL_GRID: dict[str, list[Any]] = {
    "lr": [5e-5, 1e-4, 3e-4, 1e-3], "lora_rank": [4, 8, 16], "loss": ["native", "huber", "heteroscedastic"],
    "epoch_scale": [1.0, 1.5],
}


class SweepError(ValueError):
    """Bad sweep input (mode, max_runs) or a study that cannot be opened."""


def study_name(model: str, symbol: str, preset: str, horizon: int, mode: str) -> str:
    return f"{model}-{symbol}-{preset}-h{horizon}-{mode}"


def open_study(workspace: Path, name: str, mode: str, seed: int = 0) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(workspace) / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / (name + '.db')}"
    # Grids are enqueued points (not optuna's GridSampler, which stops the study from inside `tell`
    # and cannot be driven by ask/tell): every combination not yet in the study is queued once, so
    # a restarted sweep continues with the missing points only.
    sampler: optuna.samplers.BaseSampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
                                            if mode == "auto" else optuna.samplers.RandomSampler(seed=seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if mode == "auto"
              else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="minimize", load_if_exists=True)
    points: list[dict[str, Any]] = []
    if mode == "priority":
        points = [dict(c) for c in PRIORITY_CONFIGS]
    elif mode in ("quick", "full"):
        grid = QUICK_GRID if mode == "quick" else FULL_GRID
        points = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    seen = [t.params or t.system_attrs.get("fixed_params", {}) for t in study.get_trials(deepcopy=False)]
    for pt in points:
        if not any(all(s_.get(k) == v for k, v in pt.items()) for s_ in seen):
            study.enqueue_trial(pt)
    return study


def suggest(trial: optuna.Trial, mode: str) -> dict[str, Any]:
    """The trial's training settings (the same names for every mode, so trials are comparable)."""
    if mode == "quick":
        return {"lr": trial.suggest_categorical("lr", QUICK_GRID["lr"]),
                "lora_rank": trial.suggest_categorical("lora_rank", QUICK_GRID["lora_rank"])}
    if mode == "full":
        return {k: trial.suggest_categorical(k, v) for k, v in FULL_GRID.items()}
    if mode == "priority":
        return {"lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
                "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 12, 16]),
                "loss": trial.suggest_categorical("loss", ["native", "huber", "heteroscedastic"]),
                "epoch_scale": trial.suggest_categorical("epoch_scale", [1.0, 1.5])}
    return {"lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
            "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 12, 16]),
            "loss": trial.suggest_categorical("loss", ["native", "huber"]),
            "epoch_scale": trial.suggest_categorical("epoch_scale", [1.0, 1.5])}


def trial_budget(mode: str, max_runs: int | None) -> int:
    natural = {"priority": len(PRIORITY_CONFIGS),
               "quick": math.prod(len(v) for v in QUICK_GRID.values()),
               "full": math.prod(len(v) for v in FULL_GRID.values()),
               "auto": 20}[mode]
    return min(natural, max_runs) if max_runs else natural


def train_params(base: Mapping[str, Any], hp: Mapping[str, Any], base_epochs: int) -> dict[str, Any]:
    p = {k: v for k, v in base.items() if v is not None}
    p.update({k: v for k, v in hp.items() if k != "epoch_scale"})
    p["epochs"] = max(1, int(round(base_epochs * float(hp.get("epoch_scale", 1.0)))))
    return p


def objective_from(result: Mapping[str, Any] | None) -> float | None:
    """The trial value from the train job's result: its run's val_mae_pct, else its best val loss."""
    if not result:
        return None
    for r in result.get("runs") or []:
        m = r.get("metrics") or {}
        for key in ("val_mae_pct", "best_val_loss", "val_loss"):
            v = m.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                return float(v)
    return None


def _follow(runner: Runner, job_id: str, trial: optuna.Trial | None, *, prune: bool,
            log: Callable[[str], None], cancelled: Callable[[], bool]) -> str:
    """Wait for the train job, feeding per-epoch val loss to the trial; cancel when pruned."""
    offset = 0
    reported: set[int] = set()
    pruned = False
    while True:
        st = runner.state(job_id)
        events, offset = runner.events(job_id, offset)
        for e in events:
            if e.get("type") == "loss" and e.get("val") is not None and trial is not None:
                ep = int(e.get("epoch") or 0)
                if ep in reported:
                    continue
                reported.add(ep)
                trial.report(float(e["val"]), ep)
                if prune and not pruned and trial.should_prune():
                    pruned = True
                    log(f"trial {trial.number}: pruned at epoch {ep} (val {e['val']:.4g}); cancelling job {job_id}")
                    runner.cancel(job_id)
        if st in FINAL:
            return "pruned" if pruned else str(st)
        if cancelled() and not pruned:
            runner.cancel(job_id)
            pruned = True  # treat as stopped; the state will come back cancelled
        time.sleep(0.2)


def run_sweep(runner: Runner, workspace: Path, *, model: str, symbol: str, mode: str = "priority",
              max_runs: int | None = None, preset: str = "tiny", horizon: int = 16, context: int | None = None,
              epochs: int = 2, seed: int = 0, parent: str | None = None, extra: Mapping[str, Any] | None = None,
              log: Callable[[str], None] = print, cancelled: Callable[[], bool] = lambda: False,
              progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run (or continue) one study for one model+symbol; returns its summary."""
    import optuna
    from optuna.trial import TrialState

    if mode not in MODES:
        raise SweepError(f"unknown sweep mode {mode!r}; choose one of: {', '.join(MODES)}")
    if max_runs is not None and (not isinstance(max_runs, int) or max_runs < 1):
        raise SweepError(f"max_runs must be a positive integer, got {max_runs!r}")
    name = study_name(model, symbol, preset, horizon, mode)
    study = open_study(workspace, name, mode, seed)
    budget = trial_budget(mode, max_runs)
    base = {"preset": preset, "horizon": horizon, "context": context, "seed": seed, **dict(extra or {})}

    def finish(trial_id: int, number: int, job_id: str, st: str) -> None:
        if st == "succeeded":
            val = objective_from(runner.result(job_id))
            if val is None:
                study.tell(number, state=TrialState.FAIL)
                log(f"trial {number}: job {job_id} gave no validation metric; marked failed")
            else:
                study.tell(number, val)
                log(f"trial {number}: {val:.4g} (job {job_id})")
        elif st == "pruned":
            study.tell(number, state=TrialState.PRUNED)
        else:
            study.tell(number, state=TrialState.FAIL)
            log(f"trial {number}: job {job_id} {st} ({runner.reason(job_id)})")

    # re-attach trials a previous coordinator left running
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        job_id = t.user_attrs.get("job_id")
        if not job_id:
            study.tell(t.number, state=TrialState.FAIL)
            continue
        log(f"trial {t.number}: re-attaching to job {job_id}")
        trial = optuna.trial.Trial(study, t._trial_id)
        st = _follow(runner, job_id, trial, prune=mode == "auto", log=log, cancelled=cancelled)
        finish(t._trial_id, t.number, job_id, st)

    def done_count() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))

    while done_count() < budget and not cancelled():
        trial = study.ask()
        hp = suggest(trial, mode)
        params = train_params(base, hp, epochs)
        spec = JobSpec.create("train", [symbol], model, params=params, parent=parent)
        trial.set_user_attr("job_id", spec.id)
        trial.set_user_attr("params", params)
        job_id = runner.submit(spec)
        log(f"trial {trial.number}: {hp} -> job {job_id}")
        st = _follow(runner, job_id, trial, prune=mode == "auto", log=log, cancelled=cancelled)
        finish(trial._trial_id, trial.number, job_id, st)
        if progress is not None:
            progress(done_count(), budget)

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = min(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type,return-value]
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    return {
        "study": name, "storage": str(Path(workspace) / "sweeps" / f"{name}.db"), "mode": mode, "budget": budget,
        "trials": counts, "objective": "val_mae_pct of the train run (validation span)",
        "best": {"value": best.value, "params": best.params, "job_id": best.user_attrs.get("job_id"),
                 "trial": best.number} if best else None,
        "trial_table": [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
                         "job_id": t.user_attrs.get("job_id")} for t in study.get_trials(deepcopy=False)],
    }


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """The job form: trials go to the running engine through its inbox (SpoolRunner)."""
    p = dict(spec.params)
    if spec.model is None or spec.model == "naive":
        raise SweepError("a sweep needs a foundation model (toto, kronos or chronos2)")
    mode = str(p.get("mode", "priority"))
    if mode not in MODES:
        raise SweepError(f"unknown sweep mode {mode!r}; choose one of: {', '.join(MODES)}")
    runner = SpoolRunner(ctx.workspace)
    out: dict[str, Any] = {}
    for symbol in spec.symbols:
        out[symbol] = run_sweep(
            runner, ctx.workspace, model=spec.model, symbol=symbol, mode=mode, max_runs=p.get("max_runs"),
            preset=str(p.get("preset", "tiny")), horizon=int(p.get("horizon") or 16), context=p.get("context"),
            epochs=int(p.get("epochs") or 2), seed=int(p.get("seed", 0)), parent=ctx.job_id,
            log=lambda m: ctx.events.log(m), cancelled=ctx.cancelled,
            progress=lambda d, t: ctx.events.progress(d, t, stage="sweep"))
    return {"summary": {"kind": "sweep", "model": spec.model, "studies": {s: {k: v for k, v in r.items()
                                                                           if k != "trial_table"} for s, r in out.items()},
                        "trials": {s: r["trial_table"] for s, r in out.items()}}}

