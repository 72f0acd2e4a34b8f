"""A sweep's Optuna study on disk: its name, its storage, the one-coordinator lock, its summary.

The study lives in `<workspace>/sweeps/<study>.db` (Optuna RDB storage on sqlite), so a sweep
survives restarts; `<study>.lock` next to it is an advisory lock held by the coordinator that drives
it. A study name is a path name and is checked like one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.names import PathNameError, validate_name
from engine.tasks.sweep_space import grid_points

if TYPE_CHECKING:
    import optuna


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
