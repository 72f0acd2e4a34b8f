"""engine.task_params: one pydantic model per job kind; a typo is refused with a suggestion.

Every in-tree caller that builds specs (pipeline steps, sweep trials, regression proposals, the
console's job form, the eval commands) is checked to pass only declared names, and a parameter added
to a kind's model is shown to reach the CLI help, the console form and the engine's spool intake.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import main
from engine import paths, task_params
from engine.jobs import KINDS, JobSpec, JobSpecError

TASKS = paths.PROJECT_ROOT / "engine" / "tasks"


def test_every_kind_has_a_model_and_the_common_hooks() -> None:
    assert set(task_params.PARAMS) == set(KINDS)
    for kind in KINDS:
        names = task_params.names(kind)
        assert "_test" in names and "resume" in names
        assert task_params.model_for(kind).model_config["extra"] == "forbid"


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
    with pytest.raises(JobSpecError, match="'lr' must be a valid number, got 'fast'"):
        JobSpec.create("train", ["SPY"], "toto", params={"lr": "fast"})
    with pytest.raises(JobSpecError, match="'resume' must be a valid boolean, got 1"):
        JobSpec.create("train", ["SPY"], "toto", params={"resume": 1})
    with pytest.raises(JobSpecError, match="'models' must be a valid list"):
        JobSpec.create("compare", ["SPY"], params={"models": "toto"})
    with pytest.raises(JobSpecError, match="'_test' must be a valid dictionary"):
        JobSpec.create("baseline", ["SPY"], params={"_test": 3})
    with pytest.raises(JobSpecError, match="'horizon' must be a valid integer or a valid list, got True"):
        JobSpec.create("baseline", ["SPY"], params={"horizon": True})
    # bounds and choices come from the model too
    with pytest.raises(JobSpecError, match="'epochs' must be greater than or equal to 1, got 0"):
        JobSpec.create("train", ["SPY"], "toto", params={"epochs": 0})
    with pytest.raises(JobSpecError, match="'lr' must be less than 1"):
        JobSpec.create("train", ["SPY"], "toto", params={"lr": 3.0})
    with pytest.raises(JobSpecError, match="'difficulty' must be one of easy, medium, hard, extreme"):
        JobSpec.create("train", ["SPY"], "toto", params={"difficulty": "brutal"})
    with pytest.raises(JobSpecError, match="'mode' must be 'priority', 'quick', 'full' or 'auto'"):
        JobSpec.create("sweep", ["SPY"], "toto", params={"mode": "fast"})
    # a model list names registered models: a typo is refused when the job is made, not when the
    # pipeline reaches its train step (after the baseline) or a compare reads its picks
    with pytest.raises(JobSpecError, match="pipeline: parameter 'models' unknown model 'toto1'"):
        JobSpec.create("pipeline", ["SPY"], params={"models": ["toto1"]})
    with pytest.raises(JobSpecError, match="'naive' is not trained"):
        JobSpec.create("pipeline", ["SPY"], params={"models": ["naive"]})
    with pytest.raises(JobSpecError, match="compare: parameter 'models' unknown model 'kron'"):
        JobSpec.create("compare", ["SPY"], params={"models": ["kron"]})
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


def test_in_tree_callers_pass_only_declared_names() -> None:
    from console.screens.start_run import FORM_KINDS, StartRunScreen
    from engine.tasks import regression, sweep, sweep_space
    from engine.tasks.pipeline import plan_steps

    for preset in ("tiny", "pretrained"):
        for step in plan_steps(["SPY", "AAPL"], preset=preset, horizon=16, context=None, models=["toto", "kronos"],
                               epochs=None, mode="quick", val_windows=None, test_windows=None):
            if step.kind == "report":  # run by the pipeline itself, never a job
                continue
            JobSpec.create(step.kind, step.symbols, step.model, params={**step.params, "resume": True})
    # sweep trials: base + searched point (+ resume on a resubmit)
    for hp in sweep_space.grid_points("full", "toto"):
        base = {"preset": "tiny", "horizon": 16, "context": 64, "seed": 0, "max_steps_per_epoch": 2, "stride": 4}
        JobSpec.create("train", ["SPY"], "toto", params={**sweep.train_params(base, hp, 2), "resume": True})
    # regression proposals
    for job in regression.proposed_jobs("toto", "SPY", preset="tiny", horizon=16, context=128, reason="worse"):
        JobSpec.create(job["kind"], job["symbols"], job.get("model"), params=job.get("params"))
    # the console's start-run form shows (and so sends) only fields of its kind's model
    for kind in FORM_KINDS:
        assert {f.name for f in StartRunScreen.param_fields(kind)} <= set(task_params.names(kind))


def test_baseline_refuses_preset() -> None:
    """Naive baselines have no model: a preset would be accepted and ignored, so it is refused."""
    with pytest.raises(JobSpecError, match="preset"):
        JobSpec.create("baseline", ["SPY"], None, params={"preset": "tiny"})


def test_eval_commands_build_only_declared_params() -> None:
    from console.cli import build_parser
    from console.commands.params_cli import params_from_args

    parser = build_parser()
    for kind, extra in (("validate", ["--mode", "full"]), ("compare", ["--top-k", "3"]),
                        ("regression", ["--threshold", "7.5"]), ("calibrate", ["--require-test-improvement"]),
                        ("sweep", ["--vram", "2", "--max-runs", "3"]), ("pipeline", ["--epochs", "2"])):
        model = ["--model", "toto"]
        windows = [] if kind == "sweep" else ["--val-windows", "4"]
        args = parser.parse_args([kind, "--stocks", "SPY", *model, "--horizon", "8", *windows, *extra])
        params = params_from_args(args, kind)
        assert params["horizon"] == 8 and params.get("val_windows", 4) == 4
        JobSpec.create(kind, ["SPY"], "toto", params=params)
    args = parser.parse_args(["regression", "--stocks", "SPY", "--threshold", "7.5"])
    assert params_from_args(args, "regression")["threshold_pct"] == 7.5
    args = parser.parse_args(["baseline", "--stocks", "SPY", "--horizon", "1", "16"])
    assert params_from_args(args, "baseline")["horizon"] == [1, 16]


def test_cli_flags_check_each_value_against_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    from console.cli import build_parser

    for argv, why in ((["train", "--stocks", "SPY", "--model", "toto", "--epochs", "0"], "greater than or equal to 1"),
                      (["train", "--stocks", "SPY", "--model", "toto", "--lr", "fast"], "lr must be a number"),
                      (["train", "--stocks", "SPY", "--model", "toto", "--loss", "l1"], "loss must be one of native"),
                      (["compare", "--stocks", "SPY", "--top-k", "-1"], "greater than or equal to 0")):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2
        assert why in capsys.readouterr().err, argv


def test_a_parameter_added_to_a_model_reaches_cli_help_console_form_and_spool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The one-line change: a field on TrainParams is a CLI flag, a form field and accepted by the spool."""
    from pydantic import Field

    from console.app import ForecastConsoleApp
    from console.cli import build_parser
    from console.screens.start_run import StartRunScreen
    from console.services import ConsoleServices
    from engine.controller import Engine, spool_submit
    from engine.gpu import FakeGpuSource
    from store import Store
    from tests.helpers import wait_for

    class Patched(task_params.TrainParams):
        warmup_steps: task_params.PosInt | None = Field(None, description="linear lr warm-up steps")

    monkeypatch.setitem(task_params.PARAMS, "train", Patched)

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = capsys.readouterr().out
    assert "--warmup-steps" in help_text and "linear lr warm-up steps" in " ".join(help_text.split())
    args = build_parser().parse_args(["train", "--stocks", "SPY", "--model", "toto", "--warmup-steps", "5"])
    assert args.warmup_steps == 5

    ws = tmp_path / "ws"
    monkeypatch.setenv(paths.ENV_WORKSPACE, str(ws))

    async def form_and_spool() -> None:
        app = ForecastConsoleApp(ConsoleServices(ws, hyperparams_dir=tmp_path / "hp"), telemetry_interval=None,
                                 start_engine=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await asyncio.wait_for(app.ready.wait(), 10)
            form = StartRunScreen(["AAA"], "train")
            await app.push_screen(form)
            await pilot.pause()
            form.query_one("#run-warmup_steps").value = "5"  # type: ignore[attr-defined]
            params, _ = form.build_params("train")
            assert params["warmup_steps"] == 5
        eng = Engine(ws, store=Store.open(ws, fsync=False), poll_interval=0.02, validate_symbols=False,
                     gpu_source=FakeGpuSource(0), cpu_slots=1)
        await eng.start()
        try:
            good = JobSpec.create("train", ["SPY"], "toto", params={"warmup_steps": 5})
            bad = JobSpec.from_dict({**good.to_dict(), "id": good.id + "-x", "params": {"warmup_step": 5}})
            spool_submit(ws, good)
            spool_submit(ws, bad)
            await wait_for(lambda: (ws / "jobs" / bad.id / "rejected.txt").exists(), what="spool rejection")
            assert "did you mean 'warmup_steps'" in (ws / "jobs" / bad.id / "rejected.txt").read_text()
            await wait_for(lambda: eng.job(good.id) is not None, what="spooled job queued")
        finally:
            await eng.stop(cancel_running=True)
            eng.store.close()

    asyncio.run(form_and_spool())


def test_module_is_pure() -> None:
    code = "import sys, engine.task_params, engine.jobs; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=paths.PROJECT_ROOT).returncode == 0


def test_pipeline_steps_are_checked_as_the_jobs_they_become() -> None:
    """A chain's steps (a regression's retrain → re-validate) are refused now, not when the pipeline
    reaches them: an unknown kind, a coordinator kind, an unknown key, a bad param of the step's kind."""
    from engine.task_params import TaskParamError, check

    ok = [{"kind": "train", "model": "toto", "params": {"horizon": 16}}, {"kind": "validate", "model": "toto"}]
    check("pipeline", {"steps": ok, "name": "regress-toto-spy-1"})
    for bad, words in (([{"kind": "sweep"}], "step 1: kind must be one of"),
                       ([ok[0], {"kind": "nope"}], "step 2: kind must be one of"),
                       ([{"kind": "train", "epochs": 3}], "step 1: unknown key(s) epochs"),
                       ([{"kind": "train", "params": {"horizon": "16"}}], "horizon")):
        with pytest.raises(TaskParamError, match=re.escape(words)):
            check("pipeline", {"steps": bad})
