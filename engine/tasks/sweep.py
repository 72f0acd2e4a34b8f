"""sweep: hyperparameter search over training settings with Optuna; every trial is a train job.

Modes (their points and search spaces: engine.tasks.sweep_space):
  priority  a handful of research-backed per-difficulty configs, enqueued
  quick     a small grid (lr × LoRA rank)
  full      the whole grid (lr × rank × loss × epochs)
  auto      TPE sampler + median pruner fed with the trials' per-epoch validation loss
`max_runs` caps the number of finished trials in the study (re-running continues, never repeats a
finished trial; a failed trial counts as finished, so a broken config is not retried forever).
Kronos trains with its native loss only, so its search space has no loss dimension.

The study lives in `<workspace>/sweeps/<study>.db` (Optuna RDB storage on sqlite, opened and locked
by engine.tasks.sweep_study), so a sweep survives restarts. Each trial is submitted as a train job
through a `Runner` (engine.runners): queued, visible, cancellable, recorded by the engine (the run lands in the
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

import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.jobs import JobDir, JobSpec, Resources, inbox_dir
from engine.runners import FINAL, Runner, SpoolRunner
from engine.state import Status
from engine.task_params import Params, SweepParams, TaskParamError, TrainSettings
from engine.tasks.sweep_space import suggest, train_params, trial_budget
from engine.tasks.sweep_study import SweepError, open_study, storage_url, study_lock, study_name, summarize

if TYPE_CHECKING:
    import optuna

    from engine.tasks.context import TaskContext

#: Train params that go unchanged to every trial's train job (the fields of TrainSettings).
TRAIN_PASSTHROUGH: frozenset[str] = frozenset(TrainSettings.model_fields) - frozenset(Params.model_fields)
#: Times a trial's train job is resubmitted (with resume) after it was interrupted.
MAX_RESUMES = 3
QUEUED_NOTE_S = 30.0
#: A job id the engine has neither queued nor recorded for this long is lost (the engine died between
#: taking the inbox marker and persisting the job); its trial is resubmitted instead of waited on forever.
LOST_AFTER_S = 10.0


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


def _rejected(workspace: Path, job_id: str) -> str | None:
    """The engine's reason for refusing a spooled spec (it never becomes a job record)."""
    try:
        return JobDir.of(workspace, job_id).rejected.read_text(encoding="utf-8").strip() or "rejected"
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
        if st in (None, Status.QUEUED) and now - checked >= 1.0:
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
            return "stopped" if stopping and st != Status.SUCCEEDED else str(st)
        if cancelled() and not (pruned or stopping):
            stopping = True
            if trial is not None:  # before the cancel: a coordinator killed right here still resumes it
                trial.set_user_attr("interrupted", True)
            log(f"sweep cancelled: cancelling trial job {job_id}")
            runner.cancel(job_id)
        if st == Status.QUEUED and not noted and time.time() - t0 > QUEUED_NOTE_S:
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
        if st == Status.SUCCEEDED:
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
            if st == Status.CANCELLED and trial.user_attrs.get("pruned"):
                st = "pruned"
            if st == "stopped":
                log(f"trial {trial.number}: left for the next run of this sweep (resumes job {job_id}'s checkpoint)")
                return
            resumable = st in (Status.INTERRUPTED, "lost") or (st == Status.CANCELLED and bool(trial.user_attrs.get("interrupted")))
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
    # their storage ids come from the storage's public API (a FrozenTrial does not expose its id), and
    # `optuna.trial.Trial(study, trial_id)` is the documented constructor: Optuna has no other way to keep
    # reporting into (and pruning) a trial that another process started
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
    if not inbox_dir(ctx.workspace).is_dir():
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


__all__ = ["SweepError", "check_sweep_params", "objective_from", "run", "run_sweep"]
