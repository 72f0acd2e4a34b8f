"""engine.task_params: every job kind's accepted parameters; a typo is refused with a suggestion.

The table is checked against what the tasks actually read (their source and their own lists), and
every in-tree caller that builds specs (pipeline steps, sweep trials, regression proposals, the
console's job form, the eval commands) is checked to pass only declared names.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import main
from engine import paths, task_params
from engine.jobs import KINDS, JobSpec, JobSpecError

TASKS = paths.PROJECT_ROOT / "engine" / "tasks"


def test_every_kind_has_a_table_and_the_common_hooks() -> None:
    assert set(task_params.PARAMS) == set(KINDS)
    for kind in KINDS:
        acc = task_params.accepted(kind)
        assert acc["_test"] == "dict" and acc["resume"] == "bool"


def test_misspelled_name_is_refused_with_a_suggestion() -> None:
    with pytest.raises(JobSpecError, match=r"baseline: unknown parameter 'horizn' \(did you mean 'horizon'\?\)"):
        JobSpec.create("baseline", ["SPY"], params={"horizn": 16})
    with pytest.raises(JobSpecError, match=r"did you mean 'max_steps_per_epoch'"):
        JobSpec.create("train", ["SPY"], "toto", params={"max_step_per_epoch": 3})
    with pytest.raises(JobSpecError, match="accepts: .*horizon") as exc:
        JobSpec.create("validate", ["SPY"], "toto", params={"zzzz": 1})
    assert "did you mean" not in str(exc.value)  # nothing close: no wild guess
    # a name another kind reads is still unknown here (epochs means nothing to a baseline)
    with pytest.raises(JobSpecError, match="baseline: unknown parameter 'epochs'"):
        JobSpec.create("baseline", ["SPY"], params={"epochs": 3})


def test_values_of_the_wrong_simple_type_are_refused() -> None:
    with pytest.raises(JobSpecError, match="'lr' must be a number, got 'fast'"):
        JobSpec.create("train", ["SPY"], "toto", params={"lr": "fast"})
    with pytest.raises(JobSpecError, match="'resume' must be true or false"):
        JobSpec.create("train", ["SPY"], "toto", params={"resume": 1})
    with pytest.raises(JobSpecError, match="'models' must be a list"):
        JobSpec.create("compare", ["SPY"], params={"models": "toto"})
    with pytest.raises(JobSpecError, match="'_test' must be an object"):
        JobSpec.create("baseline", ["SPY"], params={"_test": 3})
    # one value or a list where the task takes either; null means "the default"
    JobSpec.create("validate", ["SPY"], "kronos", params={"temperature": [0.5, 1.0], "top_k": 20, "context": None})
    JobSpec.create("baseline", ["SPY"], params={"horizon": [1, 16], "_test": {"steps": 1}, "resume": True})


def test_sweep_refuses_what_it_searches_with_its_own_reason() -> None:
    with pytest.raises(JobSpecError, match="sweep: lr is what the sweep searches"):
        JobSpec.create("sweep", ["SPY"], "toto", params={"lr": 1e-3})


def test_cli_run_refuses_a_typo_and_queues_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(paths.ENV_WORKSPACE, str(tmp_path / "ws"))
    monkeypatch.setenv(paths.ENV_DATA, str(paths.PROJECT_ROOT / "trainingdata"))
    assert main(["run", "baseline", "--stocks", "SPY", "--param", "horizn=16"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'horizn' (did you mean 'horizon'?)" in err and "Traceback" not in err
    assert not (tmp_path / "ws").exists()


def _source(kind: str) -> str:
    src = (TASKS / f"{kind}.py").read_text(encoding="utf-8")
    if "setup_from_params" in src:  # the shared window/span/date settings are read there, once
        src += (TASKS.parent / "evaluation.py").read_text(encoding="utf-8")
    return src


#: Declared names a task does not read itself (none now: the console form sends only accepted names);
#: sweep passes the train names through to its trials, validate its grid overrides to search_space
#: (both in the same file, so they are found).
NOT_READ: set[tuple[str, str]] = set()


@pytest.mark.parametrize("kind", KINDS)
def test_every_declared_name_is_read_by_the_task(kind: str) -> None:
    """A name in the table that the task never mentions would be accepted and ignored: the bug again."""
    src = _source(kind)
    for name in task_params.PARAMS[kind]:
        if (kind, name) in NOT_READ:
            continue
        if kind == "sweep" and name in task_params.TRAIN_PASSTHROUGH:
            continue  # forwarded wholesale to each trial's train job (train.py reads them)
        assert re.search(rf"[\"']{re.escape(name)}[\"']", src), f"{kind}.py never reads {name!r}"


def test_table_matches_the_train_and_sweep_tasks_own_lists() -> None:
    from engine.tasks import sweep, train

    assert set(task_params.accepted("train")) - {"_test"} == train.KNOWN
    assert {"mode", "max_runs", "horizon"} <= sweep.SWEEP_PARAMS and not (sweep.SEARCHED & sweep.SWEEP_PARAMS)
    assert set(task_params.REFUSED["sweep"]) == sweep.SEARCHED
    assert sweep.TRAIN_PASSTHROUGH <= set(task_params.PARAMS["train"])


def test_in_tree_callers_pass_only_declared_names() -> None:
    from console.screens.start_run import FORM_KINDS
    from engine.tasks import regression, sweep
    from engine.tasks.pipeline import plan_steps

    for preset in ("tiny", "pretrained"):
        for step in plan_steps(["SPY", "AAPL"], preset=preset, horizon=16, context=None, models=["toto", "kronos"],
                               epochs=None, mode="quick", val_windows=None, test_windows=None):
            if step.kind == "report":  # run by the pipeline itself, never a job
                continue
            JobSpec.create(step.kind, step.symbols, step.model, params={**step.params, "resume": True})
    # sweep trials: base + searched point (+ resume on a resubmit)
    for hp in sweep.grid_points("full", "toto"):
        base = {"preset": "tiny", "horizon": 16, "context": 64, "seed": 0, "max_steps_per_epoch": 2, "stride": 4}
        JobSpec.create("train", ["SPY"], "toto", params={**sweep.train_params(base, hp, 2), "resume": True})
    # regression proposals
    for job in regression.proposed_jobs("toto", "SPY", preset="tiny", horizon=16, context=128, reason="worse"):
        JobSpec.create(job["kind"], job["symbols"], job.get("model"), params=job.get("params"))
    # the console's start-run form sends only the names its kind accepts among the fields it shows
    for kind in FORM_KINDS:
        model = None if kind in ("baseline", "compare") else "toto"
        shown = {"preset": "tiny", "horizon": 16, "context": 64, "epochs": 2}
        names = task_params.accepted(kind)
        JobSpec.create(kind, ["SPY"], model, params={k: v for k, v in shown.items() if k in names})


def test_baseline_refuses_preset() -> None:
    """Naive baselines have no model: a preset would be accepted and ignored, so it is refused."""
    with pytest.raises(JobSpecError, match="preset"):
        JobSpec.create("baseline", ["SPY"], None, params={"preset": "tiny"})


def test_eval_commands_build_only_declared_params() -> None:
    import argparse

    from console.commands import eval_cmds

    args = argparse.Namespace(preset="tiny", horizon=16, seed=0, context=64, val_windows=8, test_windows=8)
    for kind, extra in (("validate", {"mode": "quick"}), ("compare", {"top_k": 2}),
                        ("regression", {"threshold_pct": 5.0}), ("calibrate", {"require_test_improvement": True})):
        model = "toto" if kind in ("validate", "calibrate") else None
        JobSpec.create(kind, ["SPY"], model, params=eval_cmds._params(args, **extra))


def test_module_is_pure() -> None:
    code = "import sys, engine.task_params, engine.jobs; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=paths.PROJECT_ROOT).returncode == 0
