"""pipeline: idempotent re-runs, resume of running/interrupted steps, retry of failed ones, and the
real in-process engine runner (a numpy-only job through a real worker subprocess)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.jobs import JobSpec
from engine.runners import ClientRunner, Runner
from engine.tasks.pipeline import Pipeline, PipelineError, pipeline_name, plan_steps
from tests.test_eval_support import write_csv


class ScriptedRunner(Runner):
    """Plays the engine's part with a script of final states per job kind (the engine itself is
    exercised by `test_engine_runner_runs_a_real_job`)."""

    def __init__(self, workspace: Path, script: dict[str, list[str]] | None = None,
                 live: dict[str, list[str]] | None = None) -> None:
        self.workspace = workspace
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.live = {k: list(v) for k, v in (live or {}).items()}  # job id -> states returned in turn
        self.submitted: list[JobSpec] = []
        self.final: dict[str, str] = {}

    def submit(self, spec: JobSpec) -> str:
        self.submitted.append(spec)
        outcomes = self.script.get(spec.kind)
        self.final[spec.id] = outcomes.pop(0) if outcomes else "succeeded"
        return spec.id

    def state(self, job_id: str) -> str | None:
        seq = self.live.get(job_id)
        if seq:
            return seq.pop(0) if len(seq) > 1 else seq[0]
        return self.final.get(job_id)

    def reason(self, job_id: str) -> str | None:
        return "scripted"

    def cancel(self, job_id: str) -> None:
        self.final[job_id] = "cancelled"

    def result(self, job_id: str) -> dict[str, Any] | None:
        return {"summary": {"ok": True}}


def _steps() -> list:
    return plan_steps(["AAA", "BBB"], preset="tiny", horizon=8, models=["toto", "chronos2"])


def test_plan_has_the_six_stages_in_order() -> None:
    names = [s.name for s in _steps()]
    assert names == ["baseline", "train:toto", "train:chronos2", "validate:toto", "validate:chronos2",
                     "compare", "regression", "report"]
    train = _steps()[1]
    assert train.params["epochs"] == 1 and train.params["context"] == 64  # tiny keeps it to minutes
    assert pipeline_name(["B", "A"], "tiny", 8, ["toto"]) == pipeline_name(["A", "B"], "tiny", 8, ["toto"])


def test_rerun_skips_done_steps_and_retries_failed_ones(tmp_path: Path) -> None:
    r1 = ScriptedRunner(tmp_path, script={"train": ["failed", "succeeded"]})
    logs: list[str] = []
    status = Pipeline(tmp_path, "p", _steps()).run(r1, log=logs.append)
    assert all(s["state"] == "succeeded" for s in status["steps"])
    kinds = [s.kind for s in r1.submitted]
    assert kinds.count("train") == 3  # first train failed once and was resubmitted
    assert any(m.startswith("[retry] train:toto") for m in logs)
    assert (tmp_path / "reports" / "latest-report.md").exists()
    state = json.loads((tmp_path / "pipelines" / "p.json").read_text())
    assert [s["state"] for s in state["steps"]] == ["succeeded"] * 8
    # second run: nothing is submitted again
    r2 = ScriptedRunner(tmp_path)
    logs2: list[str] = []
    Pipeline(tmp_path, "p", _steps()).run(r2, log=logs2.append)
    assert r2.submitted == []
    assert sum(m.startswith("[skip]") for m in logs2) == 8


def test_resume_waits_for_running_job_and_resumes_interrupted_train(tmp_path: Path) -> None:
    r1 = ScriptedRunner(tmp_path, script={"train": ["interrupted", "interrupted"]})
    with pytest.raises(PipelineError, match="train:toto interrupted"):
        Pipeline(tmp_path, "p", _steps()).run(r1, log=lambda m: None, max_attempts=2)
    state = json.loads((tmp_path / "pipelines" / "p.json").read_text())
    assert state["steps"][0]["state"] == "succeeded" and state["steps"][1]["state"] == "failed"
    second = r1.submitted[-1]
    assert second.kind == "train" and second.params.get("resume") is True
    # a new coordinator: baseline skipped, the train job found "running" is waited for, not resubmitted
    last = state["steps"][1]["job_ids"][-1]
    r2 = ScriptedRunner(tmp_path, live={last: ["running", "running", "succeeded"]})
    r2.final[last] = "succeeded"
    Pipeline(tmp_path, "p", _steps()).run(r2, log=lambda m: None)
    assert [s.kind for s in r2.submitted][0] == "train" and r2.submitted[0].model == "chronos2"


def test_changed_params_restart_only_changed_steps(tmp_path: Path) -> None:
    Pipeline(tmp_path, "p", _steps()).run(ScriptedRunner(tmp_path), log=lambda m: None)
    steps = plan_steps(["AAA", "BBB"], preset="tiny", horizon=8, models=["toto", "chronos2"], mode="full")
    r = ScriptedRunner(tmp_path)
    Pipeline(tmp_path, "p", steps).run(r, log=lambda m: None)
    assert sorted(s.kind for s in r.submitted) == ["validate", "validate"]


def test_client_runner_runs_a_real_job_in_the_engine_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store import Store

    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=200)
    monkeypatch.setenv("FORECAST_DATA", str(data))
    ws = tmp_path / "ws"
    runner = ClientRunner(ws)
    jid = runner.submit(JobSpec.create("baseline", ["AAA"], None, params={"horizon": [8]}))
    assert runner.wait(jid, timeout=60) == "succeeded"
    assert runner.result(jid)["baselines"]
    with Store.open(ws, readonly=True) as st:
        assert st.baselines("AAA")  # the engine recorded it before the step counted as done


def test_cancelling_the_pipeline_cancels_the_step_it_waits_on(tmp_path: Path) -> None:
    from engine.tasks.pipeline import PipelineCancelled

    r = ScriptedRunner(tmp_path)
    real_submit = r.submit

    def submit_running(spec: JobSpec) -> str:
        jid = real_submit(spec)
        r.final[jid] = "running"  # runs until someone cancels it
        return jid

    r.submit = submit_running  # type: ignore[method-assign]
    polls = {"n": 0}

    def cancelled() -> bool:
        polls["n"] += 1
        return polls["n"] > 2

    pipe = Pipeline(tmp_path, "p", _steps())
    with pytest.raises(PipelineCancelled, match="cancelled during baseline"):
        pipe.run(r, log=lambda m: None, cancelled=cancelled)
    (child,) = r.submitted
    assert r.final[child.id] == "cancelled"  # the running child was cancelled, not left to finish
    assert pipe.steps[0].state == "submitted"  # the next run resubmits it



def test_steps_name_the_pipeline_job_as_parent_and_report_the_step_in_flight(tmp_path: Path) -> None:
    """The Queue lists a pipeline's steps under it by their spec's `parent`; the job's stage names
    the step it waits on."""
    r = ScriptedRunner(tmp_path)
    seen: list[tuple[int, str]] = []
    Pipeline(tmp_path, "p", _steps()).run(r, log=lambda m: None, parent="pipe-job",
                                          on_step=lambda i, s: seen.append((i, s.name)))
    assert r.submitted and {s.parent for s in r.submitted} == {"pipe-job"}
    assert seen == [(i, s.name) for i, s in enumerate(_steps()) if s.kind != "report"]


def test_a_pipeline_job_made_for_one_model_trains_that_model_only() -> None:
    from engine.tasks.pipeline import pipeline_models

    assert pipeline_models(JobSpec.create("pipeline", ["SPY"], "toto", params={})) == ["toto"]
    assert pipeline_models(JobSpec.create("pipeline", ["SPY"], None, params={"models": ["kronos"]})) == ["kronos"]
    assert pipeline_models(JobSpec.create("pipeline", ["SPY"], None, params={})) == ["toto", "kronos", "chronos2"]
