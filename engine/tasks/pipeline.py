"""pipeline: baseline → train → validate → compare → regression → report, idempotent and resumable.

Every step is a real job through the engine (queued, visible, cancellable, recorded by the engine,
which is the only store writer); the pipeline only decides what to submit next and remembers it
in a state file, `<workspace>/pipelines/<name>.json` (atomic writes). Re-running the same pipeline:
  - a step whose job succeeded is skipped;
  - a step whose job is still queued/running is waited for (an engine re-attaches it on start);
  - a step whose job failed, was cancelled or interrupted is submitted again (a retry of the same
    spec; interrupted train jobs resume from their checkpoint via {"resume": true}).
A step waits until the store shows its job final, so the next step reads its results (validate
reads the train runs' adapters, compare reads the picks).

Jobs are submitted and waited for through an `engine.runners.Runner` (the job form uses the
`SpoolRunner`: a task never opens the store or constructs an engine).

Spec params for the job form: preset, horizon, context, models, epochs, mode, name, val_windows,
test_windows, stride, dayfirst; or `steps` ([{kind, model, params}], run in order over the job's
symbols instead of the six stages: how the console carries out a regression's retrain → re-validate
proposal, so the chain is a job the engine runs and survives the console quitting and the service
restarting).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.jobs import JobSpec
from engine.models import FOUNDATION_MODELS
from engine.names import validate_name
from engine.runners import FINAL, PipelineError, Runner, SpoolRunner
from engine.state import Status
from engine.task_params import PipelineParams
from store.atomic import atomic_write_json
from store.workspace import Workspace

if TYPE_CHECKING:
    from engine.tasks.context import TaskContext

TINY_TRAIN = PipelineParams.TINY_TRAIN

STEP_ORDER: tuple[str, ...] = ("baseline", "train", "validate", "compare", "regression", "report")


class PipelineCancelled(RuntimeError):
    """The pipeline was cancelled while a step ran; that step's job was cancelled too."""


@dataclass
class Step:
    name: str  # unique within the pipeline, e.g. "train:toto"
    kind: str
    symbols: list[str]
    model: str | None
    params: dict[str, Any]
    job_ids: list[str] = field(default_factory=list)
    state: str = "pending"  # pending | submitted | succeeded | failed
    reason: str | None = None
    seconds: float | None = None


def plan_steps(symbols: Sequence[str], *, preset: str = "tiny", horizon: int = 16, context: int | None = None,
               models: Sequence[str] = FOUNDATION_MODELS, epochs: int | None = None, mode: str = "quick",
               val_windows: int | None = None, test_windows: int | None = None, stride: int | None = None,
               dayfirst: bool | None = None) -> list[Step]:
    """The six stages; one train/validate step per model, each covering every symbol.

    The tiny preset gets small training defaults (PipelineParams.TINY_TRAIN: context 64, 1 epoch of at
    most 10 steps) so the whole pipeline over the priority symbols runs in minutes on a CPU. Evaluation uses the same
    whole-span windows as a validate/compare job run by hand (engine.evaluation.build_setup's
    defaults), so the pipeline's numbers are comparable with theirs.
    """
    syms = list(symbols)
    tiny = preset == "tiny"
    if tiny:
        context = context or TINY_TRAIN["context"]
        epochs = epochs or TINY_TRAIN["epochs"]
    ev: dict[str, Any] = {"preset": preset, "horizon": horizon}
    for key, value in (("context", context), ("val_windows", val_windows), ("test_windows", test_windows),
                       ("stride", stride), ("dayfirst", dayfirst)):
        if value is not None:
            ev[key] = value
    steps = [Step("baseline", "baseline", syms, None, {"horizon": [horizon]})]
    for m in models:
        tp: dict[str, Any] = {"preset": preset, "horizon": horizon}
        if context:
            tp["context"] = context
        if epochs:
            tp["epochs"] = epochs
        if tiny:
            tp.update({"max_steps_per_epoch": TINY_TRAIN["max_steps_per_epoch"], "stride": 4, "mae_samples": 4})
        steps.append(Step(f"train:{m}", "train", syms, m, tp))
    for m in models:
        steps.append(Step(f"validate:{m}", "validate", syms, m, {**ev, "mode": mode}))
    steps.append(Step("compare", "compare", syms, None, {**ev, "models": list(models)}))
    steps.append(Step("regression", "regression", syms, None, {**ev, "models": list(models)}))
    steps.append(Step("report", "report", syms, None, {}))
    return steps


class Pipeline:
    """A named pipeline whose progress lives in `<workspace>/pipelines/<name>.json`."""

    def __init__(self, workspace: Path, name: str, steps: list[Step]) -> None:
        self.workspace = Path(workspace)
        self.name = validate_name("pipeline name", name)  # it becomes a file name
        self.path = self.workspace / "pipelines" / f"{name}.json"
        self.steps = steps
        self.started_at = time.time()
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PipelineError(f"pipeline state {self.path} is unreadable ({exc}); move it away to start over") from None
        old = {s["name"]: s for s in data.get("steps", [])}
        for s in self.steps:
            o = old.get(s.name)
            if o and o.get("kind") == s.kind and o.get("symbols") == s.symbols and o.get("params") == s.params:
                s.job_ids = list(o.get("job_ids") or [])
                s.state = o.get("state", "pending")
                s.reason = o.get("reason")
                s.seconds = o.get("seconds")

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"name": self.name, "updated": time.time(),
                                      "steps": [asdict(s) for s in self.steps]}, indent=1)

    def run(self, runner: Runner, *, log: Callable[[str], None] = print, max_attempts: int = 2,
            cancelled: Callable[[], bool] | None = None, step_timeout: float | None = None,
            parent: str | None = None, on_step: Callable[[int, Step], None] | None = None) -> dict[str, Any]:
        """Drive every step to success (or stop at the first that fails twice); idempotent.

        `parent` (the pipeline job's id) goes into every step's spec, so the Queue lists the steps
        under their pipeline; `on_step(i, step)` is told which step is in flight (the job's stage)."""
        for index, step in enumerate(self.steps):
            if cancelled is not None and cancelled():
                break
            if step.state == Status.SUCCEEDED:
                log(f"[skip] {step.name}: done earlier (job {step.job_ids[-1] if step.job_ids else '-'})")
                continue
            if step.kind == "report":
                t0 = time.time()
                from engine.tasks.report import stamp, store_report, write_report

                paths = write_report(Workspace(self.workspace).reports_dir, f"report-{self.name}-{stamp()}", None,
                                     store_report(self.workspace, f"Pipeline {self.name}"))
                step.state, step.seconds, step.reason = Status.SUCCEEDED, time.time() - t0, str(paths["markdown"])
                self.save()
                log(f"[done] report: {paths['markdown']}")
                continue
            attempts = 0
            while True:
                job_id = step.job_ids[-1] if step.job_ids else None
                st = runner.state(job_id) if job_id else None
                if job_id and st not in FINAL and st is not None:
                    log(f"[wait] {step.name}: job {job_id} is {st}")
                elif st == Status.SUCCEEDED:
                    step.state = Status.SUCCEEDED
                    self.save()
                    break
                else:
                    if job_id and st in FINAL:
                        attempts += 1
                        if attempts >= max_attempts:
                            step.state, step.reason = Status.FAILED, runner.reason(job_id) or st
                            self.save()
                            raise PipelineError(f"step {step.name} {st} (job {job_id}): {step.reason}")
                        log(f"[retry] {step.name}: job {job_id} {st} ({runner.reason(job_id)}); submitting again")
                    params = dict(step.params)
                    if job_id and st == Status.INTERRUPTED and step.kind == "train":
                        params["resume"] = True
                    spec = JobSpec.create(step.kind, step.symbols, step.model, params=params, priority=5,
                                          parent=parent)
                    job_id = runner.submit(spec)
                    step.job_ids.append(job_id)
                    step.state = "submitted"
                    self.save()
                    log(f"[submit] {step.name}: job {job_id}")
                assert job_id is not None  # in flight: the job found running or the one just submitted
                if on_step is not None:
                    on_step(index, step)
                in_flight = job_id  # (bound as the default below: mypy does not narrow a default expression)
                t0 = time.time()

                def cancel_child(job_id: str = in_flight, step: Step = step) -> None:
                    # A cancelled pipeline cancels the step it waits on (the worker docs' promise);
                    # the step stays submitted, so the next run resubmits it.
                    if cancelled is not None and cancelled():
                        runner.cancel(job_id)
                        log(f"[cancel] {step.name}: job {job_id} cancelled with the pipeline")
                        raise PipelineCancelled(f"pipeline {self.name} cancelled during {step.name}")

                st = runner.wait(in_flight, timeout=step_timeout, on_poll=cancel_child)
                step.seconds = (step.seconds or 0.0) + (time.time() - t0)
                if st == Status.SUCCEEDED:
                    step.state = Status.SUCCEEDED
                    step.reason = None
                    self.save()
                    summary = (runner.result(job_id) or {}).get("summary") or {}
                    log(f"[done] {step.name}: job {job_id} in {step.seconds:.1f} s"
                        + (f" ({_brief(summary)})" if summary else ""))
                    break
        return self.status()

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "state_file": str(self.path),
                "steps": [{"name": s.name, "state": s.state, "jobs": s.job_ids, "seconds": s.seconds,
                           "reason": s.reason} for s in self.steps]}


def _brief(summary: dict[str, Any]) -> str:
    for key in ("winners", "picked", "flagged"):
        if key in summary:
            return f"{key}: {summary[key]}"
    return ", ".join(f"{k}={v}" for k, v in list(summary.items())[:3] if not isinstance(v, dict | list))


def chain_steps(symbols: Sequence[str], steps: Sequence[dict[str, Any]]) -> list[Step]:
    """Explicit steps (the `steps` param: [{kind, model, params}]), in order, over `symbols`."""
    return [Step(f"{i + 1}:{s['kind']}" + (f":{s['model']}" if s.get("model") else ""), str(s["kind"]),
                 list(symbols), s.get("model"), dict(s.get("params") or {})) for i, s in enumerate(steps)]


def chain_name(symbols: Sequence[str], steps: Sequence[dict[str, Any]]) -> str:
    """Stable per chain, so submitting the same chain again resumes its state file (never redoes a
    step that succeeded)."""
    import hashlib

    key = json.dumps([sorted(symbols), list(steps)], sort_keys=True)
    return f"chain-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def pipeline_name(symbols: Sequence[str], preset: str, horizon: int, models: Sequence[str]) -> str:
    """Stable per request, so re-running the same command resumes the same state file."""
    import hashlib

    key = json.dumps([sorted(symbols), preset, horizon, list(models)])
    return f"{preset}-h{horizon}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


#: The worker lets this task handle SIGTERM itself: it cancels its child jobs before returning.
COOPERATIVE_CANCEL = True


def pipeline_models(spec: JobSpec) -> list[str]:
    """The models a pipeline job trains: its `models` param, else the job's own model (a spec made
    for one model means that model), else every foundation model."""
    return list(spec.params.get("models") or ([spec.model] if spec.model else FOUNDATION_MODELS))


def run(spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """The job form: drives the steps through the running engine's inbox (SpoolRunner)."""
    p = dict(spec.params)
    preset = str(p.get("preset", "tiny"))
    horizon = int(p.get("horizon") or 16)
    models = pipeline_models(spec)
    if p.get("steps"):
        steps = chain_steps(spec.symbols, p["steps"])
        name = str(p.get("name") or chain_name(spec.symbols, p["steps"]))
    else:
        steps = plan_steps(spec.symbols, preset=preset, horizon=horizon, context=p.get("context"), models=models,
                           epochs=p.get("epochs"), mode=str(p.get("mode", "quick")),
                           val_windows=p.get("val_windows"), test_windows=p.get("test_windows"),
                           stride=p.get("stride"), dayfirst=p.get("dayfirst"))
        name = str(p.get("name") or pipeline_name(spec.symbols, preset, horizon, models))
    pipe = Pipeline(ctx.workspace, name, steps)
    runner = SpoolRunner(ctx.workspace)
    done = [0]

    def log(msg: str) -> None:
        ctx.events.log(msg)
        if msg.startswith(("[done]", "[skip]")):
            done[0] += 1
            ctx.events.progress(done[0], len(steps), stage=msg.split(":", 1)[0])

    def on_step(index: int, step: Step) -> None:
        ctx.events.progress(done[0], len(steps), stage=f"step {index + 1}/{len(steps)} {step.name}")

    try:
        status = pipe.run(runner, log=log, cancelled=ctx.cancelled, parent=spec.id, on_step=on_step)
    except PipelineCancelled as exc:
        ctx.events.log(str(exc))
        status = pipe.status()
    return {"summary": {"kind": "pipeline", **status}}
