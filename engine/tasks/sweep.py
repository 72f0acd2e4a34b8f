"""sweep: hyperparameter search over training settings with Optuna; every trial is a train job.

Modes:
  priority  a handful of research-backed configs (the prior art's per-difficulty recipes), enqueued
  quick     a small grid (lr × LoRA rank)
  full      the whole grid (lr × rank × loss × epochs)
  auto      TPE sampler + median pruner fed with the trials' per-epoch validation loss
`max_runs` caps the number of finished trials in the study (re-running continues, never repeats a
finished trial; a failed trial counts as finished, so a broken config is not retried forever).
Kronos trains with its native loss only, so its search space has no loss dimension.

The study lives in `<workspace>/sweeps/<study>.db` (Optuna RDB storage on sqlite), so a sweep
survives restarts. Each trial is submitted as a train job through a `Runner`
(engine.tasks.pipeline): queued, visible, cancellable, recorded by the engine (the run lands in the
tracker with the trial's hyperparameters; the trial keeps the job id in its user attrs). Trials run
one at a time. Pruning reads the train job's `loss` events (val per epoch), reports them to the
trial and cancels the job when the median pruner says so. The objective is the train run's
`val_mae_pct` (validation span; falls back to its best validation loss).

Stopping and restarting — what happens to the trial in flight:
  - the sweep is cancelled (its job, or Ctrl-C of the headless command): the sweep cancels the
    trial's train job and leaves the trial RUNNING in the study, marked `interrupted`; the next run
    of the same sweep resubmits that trial's exact settings with `resume: true` (the train task
    continues from the epoch checkpoint), so no configuration is skipped or repeated;
  - the coordinator died (killed, machine restart): the trial is RUNNING with its job id; the next
    run re-attaches: finished → told, still queued/running → waited for, interrupted → resumed;
  - the engine rejected the spooled trial spec (`jobs/<id>/rejected.txt`) or the job failed or a
    person cancelled the trial's job directly → the trial is FAIL (its reason is logged).
A study is driven by one coordinator at a time (an advisory lock next to the .db); a second sweep
of the same study is refused with the holder's job id.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.jobs import JobSpec, Resources
from engine.names import PathNameError, validate_name
from engine.runners import FINAL, Runner, SpoolRunner
from engine.task_params import Params, SweepParams, TaskParamError, TrainSettings

if TYPE_CHECKING:
    import optuna

    from engine.tasks.context import TaskContext

MODES: tuple[str, ...] = typing.get_args(SweepParams.model_fields["mode"].annotation)

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
#: What the sweep searches; a spec may not pin these (that would be a single train job).
SEARCHED: frozenset[str] = frozenset(SweepParams.REFUSED)
#: Train params that go unchanged to every trial's train job (the fields of TrainSettings).
TRAIN_PASSTHROUGH: frozenset[str] = frozenset(TrainSettings.model_fields) - frozenset(Params.model_fields)
#: Times a trial's train job is resubmitted (with resume) after it was interrupted.
MAX_RESUMES = 3
QUEUED_NOTE_S = 30.0
#: A job id the engine has neither queued nor recorded for this long is lost (the engine died between
#: taking the inbox marker and persisting the job); its trial is resubmitted instead of waited on forever.
LOST_AFTER_S = 10.0


class SweepError(ValueError):
    """Bad sweep input (mode, max_runs, params) or a study that cannot be opened or is busy."""


def _study_file_name(name: str) -> str:
    """A study name becomes `sweeps/<name>.db` and `.lock`: checked like every path name."""
    try:
        return validate_name("sweep study name", name)
    except PathNameError as exc:
        raise SweepError(str(exc)) from None


def study_name(model: str, symbol: str, preset: str, horizon: int, mode: str) -> str:
    return f"{model}-{symbol}-{preset}-h{horizon}-{mode}"


def losses_for(model: str | None) -> list[str]:
    """The losses a sweep may try for `model` (Kronos: native only)."""
    return [x for x in ("native", "huber", "heteroscedastic") if x in _supported(model)]


def _supported(model: str | None) -> tuple[str, ...]:
    """The losses `model`'s adapter can train with (all of them when no model is named)."""
    if model is None:
        return ("native", "huber", "heteroscedastic")
    from engine.forecasters.registry import adapter_class

    return adapter_class(model).supported_losses


def grid_points(mode: str, model: str | None = None) -> list[dict[str, Any]]:
    """The enqueued points of the priority/quick/full modes, adapted to what `model` supports."""
    if mode == "priority":
        pts = [dict(c) for c in PRIORITY_CONFIGS]
    elif mode in ("quick", "full"):
        grid = QUICK_GRID if mode == "quick" else {**FULL_GRID, "loss": losses_for(model)}
        pts = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    else:
        return []
    if _supported(model) == ("native",):
        out: list[dict[str, Any]] = []
        for pt in pts:
            if "loss" in pt:
                pt["loss"] = "native"
            if pt not in out:
                out.append(pt)
        pts = out
    return pts


def storage_url(workspace: Path, name: str) -> str:
    """The study's SQLite storage (one file per study under <workspace>/sweeps/)."""
    return f"sqlite:///{Path(workspace) / 'sweeps' / (name + '.db')}"


def open_study(workspace: Path, name: str, mode: str, seed: int = 0, model: str | None = None) -> optuna.Study:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(workspace) / "sweeps"
    name = _study_file_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    storage = storage_url(workspace, name)
    # Grids are enqueued points (not optuna's GridSampler, which stops the study from inside `tell`
    # and cannot be driven by ask/tell): every combination not yet in the study is queued once, so
    # a restarted sweep continues with the missing points only.
    sampler: optuna.samplers.BaseSampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
                                            if mode == "auto" else optuna.samplers.RandomSampler(seed=seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1) if mode == "auto"
              else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="minimize", load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/optuna errors vary; the user needs the path
        raise SweepError(f"cannot open the sweep study {folder / (name + '.db')}: {type(exc).__name__}: {exc}"
                         ) from None
    seen = [t.params or t.system_attrs.get("fixed_params", {}) for t in study.get_trials(deepcopy=False)]
    for pt in grid_points(mode, model):
        if not any(all(s_.get(k) == v for k, v in pt.items()) for s_ in seen):
            study.enqueue_trial(pt)
    return study


def suggest(trial: optuna.Trial, mode: str, model: str | None = None) -> dict[str, Any]:
    """The trial's training settings (the same names for every mode, so trials are comparable)."""
    losses = losses_for(model)
    if mode == "quick":
        return {"lr": trial.suggest_categorical("lr", QUICK_GRID["lr"]),
                "lora_rank": trial.suggest_categorical("lora_rank", QUICK_GRID["lora_rank"])}
    if mode == "full":
        return {k: trial.suggest_categorical(k, losses if k == "loss" else v) for k, v in FULL_GRID.items()}
    if mode == "priority":
        return {"lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
                "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 12, 16]),
                "loss": trial.suggest_categorical("loss", losses),
                "epoch_scale": trial.suggest_categorical("epoch_scale", [1.0, 1.5])}
    return {"lr": trial.suggest_float("lr", 1e-5, 3e-3, log=True),
            "lora_rank": trial.suggest_categorical("lora_rank", [4, 8, 12, 16]),
            "loss": trial.suggest_categorical("loss", [x for x in losses if x != "heteroscedastic"]),
            "epoch_scale": trial.suggest_categorical("epoch_scale", [1.0, 1.5])}


def trial_budget(mode: str, max_runs: int | None, model: str | None = None) -> int:
    natural = len(grid_points(mode, model)) if mode != "auto" else 20
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


def check_sweep_params(params: Mapping[str, Any]) -> SweepParams:
    """Refuse, before any trial is queued, params the sweep would silently ignore or override."""
    try:
        return SweepParams.of(params)
    except TaskParamError as exc:
        raise SweepError(str(exc)) from None


@contextlib.contextmanager
def study_lock(workspace: Path, name: str, owner: str) -> Iterator[None]:
    """One coordinator per study: two would ask/tell the same RUNNING trials and double-submit.

    An advisory `flock`, so a coordinator that dies (even SIGKILL) releases it with its process.
    """
    import fcntl

    folder = Path(workspace) / "sweeps"
    name = _study_file_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = path.read_text(encoding="utf-8").strip() or "another process"
            except OSError:
                holder = "another process"
            raise SweepError(f"study {name} is being run by another sweep ({holder}); wait for it or cancel it"
                             ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{owner} (pid {os.getpid()})".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _rejected(workspace: Path, job_id: str) -> str | None:
    """The engine's reason for refusing a spooled spec (it never becomes a job record)."""
    try:
        return (Path(workspace) / "jobs" / job_id / "rejected.txt").read_text(encoding="utf-8").strip() or "rejected"
    except OSError:
        return None


def _follow(runner: Runner, job_id: str, trial: optuna.Trial | None, *, prune: bool,
            log: Callable[[str], None], cancelled: Callable[[], bool], poll: float = 0.2) -> str:
    """Wait for the train job, feeding per-epoch val loss to the trial; cancel when pruned.

    Returns the job's final state, or "pruned" (we cancelled it for the pruner), "stopped" (we
    cancelled it because the sweep itself is being cancelled), "rejected" (the engine refused it),
    "lost" (no engine knows it, see LOST_AFTER_S).
    """
    offset = 0
    reported: set[int] = set()
    pruned = stopping = False
    t0 = time.time()
    noted = False
    unknown_since: float | None = None
    checked = 0.0
    while True:
        if _rejected(runner.workspace, job_id) is not None:
            return "rejected"
        st = runner.state(job_id)
        now = time.time()
        if st in (None, "queued") and now - checked >= 1.0:
            checked = now
            if runner.exists(job_id):
                unknown_since = None
            elif unknown_since is None:
                unknown_since = now
            elif now - unknown_since > LOST_AFTER_S:
                return "lost"
        events, offset = runner.events(job_id, offset)
        for e in events:
            if e.get("type") == "loss" and e.get("val") is not None and trial is not None:
                ep = int(e.get("epoch") or 0)
                if ep in reported:
                    continue
                reported.add(ep)
                with warnings.catch_warnings():  # a resumed/re-attached job repeats reported epochs: keep the first
                    warnings.simplefilter("ignore")
                    trial.report(float(e["val"]), ep)
                if prune and not (pruned or stopping) and trial.should_prune():
                    pruned = True
                    trial.set_user_attr("pruned", True)  # a coordinator dying before `tell` still counts it pruned
                    log(f"trial {trial.number}: pruned at epoch {ep} (val {e['val']:.4g}); cancelling job {job_id}")
                    runner.cancel(job_id)
        if st in FINAL:
            if pruned:  # even if it finished before the cancel landed: the pruner judged it
                return "pruned"
            return "stopped" if stopping and st != "succeeded" else str(st)
        if cancelled() and not (pruned or stopping):
            stopping = True
            if trial is not None:  # before the cancel: a coordinator killed right here still resumes it
                trial.set_user_attr("interrupted", True)
            log(f"sweep cancelled: cancelling trial job {job_id}")
            runner.cancel(job_id)
        if st == "queued" and not noted and time.time() - t0 > QUEUED_NOTE_S:
            noted = True
            log(f"trial job {job_id} is still queued after {QUEUED_NOTE_S:.0f} s (waiting for a free slot; "
                "a running sweep job holds one itself)")
        time.sleep(poll)


def run_sweep(runner: Runner, workspace: Path, *, model: str, symbol: str, mode: str = "priority",
              max_runs: int | None = None, preset: str = "tiny", horizon: int = 16, context: int | None = None,
              epochs: int = 2, seed: int = 0, parent: str | None = None, extra: Mapping[str, Any] | None = None,
              log: Callable[[str], None] = print, cancelled: Callable[[], bool] = lambda: False,
              progress: Callable[[int, int], None] | None = None, priority: int = 0,
              resources: Resources | Mapping[str, Any] | None = None, poll: float = 0.2) -> dict[str, Any]:
    """Run (or continue) one study for one model+symbol; returns its summary.

    `extra` are train params passed unchanged to every trial (e.g. max_steps_per_epoch);
    `resources`/`priority` are those of every trial's train job.
    """
    extra = {k: v for k, v in dict(extra or {}).items() if v is not None}
    unknown = sorted(set(extra) - TRAIN_PASSTHROUGH)
    if unknown:
        raise SweepError(f"sweep: {', '.join(unknown)} cannot be passed to the trials; they take: "
                         f"{', '.join(sorted(TRAIN_PASSTHROUGH))}")
    check_sweep_params({**extra, "mode": mode, "max_runs": max_runs, "preset": preset, "horizon": horizon,
                        "context": context, "epochs": epochs, "seed": seed})
    name = study_name(model, symbol, preset, horizon, mode)
    with study_lock(workspace, name, f"job {parent}" if parent else "the headless sweep command"):
        study = open_study(workspace, name, mode, seed, model=model)
        return _drive(study, runner, workspace, name=name, model=model, symbol=symbol, mode=mode,
                      budget=trial_budget(mode, max_runs, model),
                      base={"preset": preset, "horizon": horizon, "context": context, "seed": seed,
                            **extra},
                      epochs=epochs, parent=parent, log=log, cancelled=cancelled, progress=progress,
                      priority=priority, resources=resources, poll=poll)


def _drive(study: optuna.Study, runner: Runner, workspace: Path, *, name: str, model: str, symbol: str, mode: str,
           budget: int, base: dict[str, Any], epochs: int, parent: str | None, log: Callable[[str], None],
           cancelled: Callable[[], bool], progress: Callable[[int, int], None] | None, priority: int,
           resources: Resources | Mapping[str, Any] | None, poll: float) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    prune = mode == "auto"

    def submit(trial: optuna.Trial, params: dict[str, Any]) -> str:
        spec = JobSpec.create("train", [symbol], model, params=params, parent=parent, priority=priority,
                              resources=resources)
        ids = [*list(trial.user_attrs.get("job_ids") or []), spec.id]
        # recorded before the submit, so a coordinator killed in between re-attaches (or resubmits)
        trial.set_user_attr("job_id", spec.id)
        trial.set_user_attr("job_ids", ids)
        trial.set_user_attr("params", params)
        return runner.submit(spec)

    def finish(trial: optuna.Trial, job_id: str, st: str) -> None:
        if st == "succeeded":
            val = objective_from(runner.result(job_id))
            if val is None:
                study.tell(trial.number, state=TrialState.FAIL)
                log(f"trial {trial.number}: job {job_id} gave no validation metric; marked failed")
            else:
                study.tell(trial.number, val)
                log(f"trial {trial.number}: {val:.4g} (job {job_id})")
        elif st == "pruned":
            study.tell(trial.number, state=TrialState.PRUNED)
        elif st == "rejected":
            # The refusal is about the spec (symbol, VRAM...), so every further trial would be refused
            # too: stop the sweep. The point goes back in the queue and the failure does not count.
            reason = _rejected(runner.workspace, job_id)
            trial.set_user_attr("reason", f"rejected: {reason}")
            trial.set_user_attr("rejected", True)
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(dict(trial.params))
            raise SweepError(f"the engine refused trial job {job_id}: {reason}")
        else:
            reason = runner.reason(job_id)
            trial.set_user_attr("reason", f"{st}: {reason}")
            study.tell(trial.number, state=TrialState.FAIL)
            log(f"trial {trial.number}: job {job_id} {st} ({reason}); marked failed")

    def drive(trial: optuna.Trial, job_id: str, params: dict[str, Any], resumes: int = 0) -> None:
        """Follow the trial's job to an outcome, resubmitting (resume) when it was interrupted."""
        while True:
            st = _follow(runner, job_id, trial, prune=prune, log=log, cancelled=cancelled, poll=poll)
            if st == "cancelled" and trial.user_attrs.get("pruned"):
                st = "pruned"
            if st == "stopped":
                log(f"trial {trial.number}: left for the next run of this sweep (resumes job {job_id}'s checkpoint)")
                return
            resumable = st in ("interrupted", "lost") or (st == "cancelled" and bool(trial.user_attrs.get("interrupted")))
            if resumable and resumes < MAX_RESUMES and not cancelled():
                resumes += 1
                trial.set_user_attr("interrupted", False)
                job_id = submit(trial, {**params, "resume": True})
                log(f"trial {trial.number}: job was {st}; resubmitted as {job_id} (resume)")
                continue
            if resumable and cancelled():
                return  # stays RUNNING + interrupted: the next run resumes it
            finish(trial, job_id, st)
            return

    # trials a previous coordinator left running (killed, or cancelled with the trial interrupted);
    # their storage ids come from the storage's public API (a FrozenTrial does not expose its id)
    left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    trial_ids: dict[int, int] = {}
    if left:
        storage = optuna.storages.get_storage(storage_url(workspace, name))
        sid = storage.get_study_id_from_name(name)
        trial_ids = {t.number: storage.get_trial_id_from_study_id_trial_number(sid, t.number) for t in left}
    for t in left:
        if cancelled():
            break
        job_id = t.user_attrs.get("job_id")
        params = t.user_attrs.get("params")
        trial = optuna.trial.Trial(study, trial_ids[t.number])
        if not job_id or not isinstance(params, dict):
            study.tell(t.number, state=TrialState.FAIL)
            continue
        log(f"trial {t.number}: re-attaching to job {job_id}")
        drive(trial, job_id, params)

    def done_count() -> int:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        return sum(1 for t in done if not t.user_attrs.get("rejected"))

    while done_count() < budget and not cancelled():
        trial = study.ask()
        hp = suggest(trial, mode, model)
        params = train_params(base, hp, epochs)
        job_id = submit(trial, params)
        log(f"trial {trial.number}: {hp} -> job {job_id}")
        drive(trial, job_id, params)
        if progress is not None:
            progress(done_count(), budget)

    return summarize(study, name, workspace, mode, budget)


def summarize(study: optuna.Study, name: str, workspace: Path, mode: str, budget: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: float(t.value)) if complete else None  # type: ignore[arg-type]
    counts = {s.name.lower(): sum(1 for t in trials if t.state == s)
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    counts["interrupted"] = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return {
        "study": name, "storage": str(Path(workspace) / "sweeps" / f"{name}.db"), "mode": mode, "budget": budget,
        "trials": counts, "objective": "val_mae_pct of the train run (validation span)",
        "best": {"value": best.value, "params": best.params, "job_id": best.user_attrs.get("job_id"),
                 "trial": best.number} if best else None,
        "trial_table": [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
                         "job_id": t.user_attrs.get("job_id"), "job_ids": t.user_attrs.get("job_ids"),
                         "reason": t.user_attrs.get("reason")}
                        for t in trials if t.state != TrialState.WAITING],
    }


#: The worker lets this task handle SIGTERM itself: it cancels its child jobs before returning.
COOPERATIVE_CANCEL = True


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """The job form: trials go to the running engine through its inbox (SpoolRunner).

    Params: mode, max_runs, preset, horizon, context, epochs (base epochs per trial), seed, gpus and
    vram_gb (each trial's resources), and train params passed to every trial (TRAIN_PASSTHROUGH).
    The trials get this job's priority and this job as their parent.
    """
    if spec.model is None or spec.model == "naive":
        raise SweepError("a sweep needs a foundation model (toto, kronos or chronos2)")
    p = check_sweep_params(spec.params)
    if not (Path(ctx.workspace) / "jobs" / "inbox").is_dir():
        # Every engine creates it on start; its absence means this worker runs in a copy of the
        # workspace (Ray's shipped mode), where spooled trials would never reach an engine.
        raise SweepError(f"a sweep job must run in its engine's workspace, but {ctx.workspace} has no jobs/inbox "
                         "(on Ray: make the workspace visible at the same path on the node, FORECAST_RAY_SHARED=1)")
    # each trial's resources: GPUs default to 1 when only a VRAM estimate is given
    gpus = p.gpus if p.gpus is not None else (1.0 if p.vram_gb else None)
    trial_res = Resources(gpus=gpus or 0.0, vram_gb=p.vram_gb or 0.0) if (gpus is not None or p.vram_gb) else None
    runner = SpoolRunner(ctx.workspace)
    out: dict[str, Any] = {}
    for symbol in spec.symbols:
        if ctx.cancelled():
            break
        out[symbol] = run_sweep(
            runner, ctx.workspace, model=spec.model, symbol=symbol, mode=p.mode, max_runs=p.max_runs,
            preset=p.preset, horizon=p.horizon, context=p.context, epochs=p.epochs, seed=p.seed, parent=ctx.job_id,
            extra={k: v for k, v in p.model_dump(exclude_unset=True).items() if k in TRAIN_PASSTHROUGH},
            log=lambda m: ctx.events.log(m), cancelled=ctx.cancelled,
            progress=lambda d, t: ctx.events.progress(d, t, stage="sweep"), priority=spec.priority,
            resources=trial_res)
    return {"summary": {"kind": "sweep", "model": spec.model,
                        "studies": {s: {k: v for k, v in r.items() if k != "trial_table"} for s, r in out.items()},
                        "trials": {s: r["trial_table"] for s, r in out.items()}}}


__all__ = ["MODES", "SweepError", "check_sweep_params", "grid_points", "objective_from", "open_study", "run",
           "run_sweep", "study_lock", "suggest", "summarize", "train_params", "trial_budget"]
