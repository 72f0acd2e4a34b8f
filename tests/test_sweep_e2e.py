"""The sweep end to end on the local backend: a real Engine, the sweep submitted as a job, its
trials spooled through `jobs/inbox/` and run as real tiny-preset Toto train jobs (real worker
processes, real TinyDB store, real Optuna sqlite study).

Checks issue 6's promises: each trial is its own engine job (visible, with the sweep as parent),
lands in the tracker with the trial's hyperparameters, the study persists and a re-run continues it
without repeating finished trials; cancelling the sweep cancels its trial (queued or running) and
the next run resumes that same trial instead of skipping or duplicating it.

Why Toto: its tiny preset trains fastest here (≈0.1 s for a couple of steps); a trial job costs
mostly its worker's start-up (torch import), a few seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.controller import Engine
from engine.gpu import GpuSource
from engine.jobs import JobSpec
from engine.state import JobState
from tests.helpers import job_states, wait_for, write_cycle_csv

pytestmark = pytest.mark.slow

SYMBOL = "SYN"
#: context 64, horizon 16, 1 epoch of 2 steps, few validation samples: a trial is start-up bound.
TINY: dict[str, Any] = {"preset": "tiny", "horizon": 16, "context": 64, "epochs": 1, "max_steps_per_epoch": 2,
                        "stride": 4, "mae_samples": 4}
HOOK_ENV = {"FORECAST_TEST_HOOKS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class NoGpu(GpuSource):
    """This machine has no GPU; a fixed snapshot keeps NVML out of the test."""

    def snapshot(self) -> Any:
        from engine.gpu import Telemetry

        return Telemetry(available=False, message="no GPU")


@dataclass
class Env:
    ws: Path
    engine: Engine
    store: Any


def setup_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    write_cycle_csv(data / f"{SYMBOL}.csv")
    monkeypatch.setenv("FORECAST_DATA", str(data))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(tmp_path / "hyperparams"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FORECAST_BACKEND", raising=False)
    return tmp_path / "ws"


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    from engine.backends.local import LocalBackend
    from store import Store

    ws = setup_env(tmp_path, monkeypatch)
    store = Store.open(ws)
    # one CPU slot: the sweep job itself holds none (a coordinator), so its trials still run
    engine = Engine(ws, store=store, backend=LocalBackend(), cpu_slots=1, poll_interval=0.1, heartbeat_s=1.0,
                    cancel_grace_s=5.0, gpu_source=NoGpu(), env=HOOK_ENV)
    await engine.start()
    try:
        yield Env(ws, engine, store)
    finally:
        await engine.stop(cancel_running=True)
        store.close()


def finished(engine: Engine, job_id: str) -> bool:
    st = engine.job(job_id)
    return st is not None and st.finished


def explain(engine: Engine, ws: Path, job_id: str) -> str:
    err = ws / "jobs" / job_id / "stderr.log"
    return "\n".join(engine.log_tail(job_id, 40)) + "\n--- stderr ---\n" + (err.read_text() if err.exists() else "")


def trials_of(engine: Engine, sweep_id: str) -> list[JobState]:
    return [j for j in engine.jobs() if j.kind == "train" and j.parent == sweep_id]


def load_study(ws: Path, mode: str) -> Any:
    import optuna

    from engine.tasks.sweep import study_name

    name = study_name("toto", SYMBOL, "tiny", 16, mode)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{ws / 'sweeps' / (name + '.db')}")


async def run_sweep_job(e: Env, params: dict[str, Any], timeout: float = 75.0) -> tuple[JobSpec, list[JobState]]:
    spec = JobSpec.create("sweep", [SYMBOL], "toto", params=params)
    e.engine.submit(spec)
    await wait_for(lambda: finished(e.engine, spec.id), timeout, f"sweep job {spec.id}", detail=job_states(e.engine))
    st = e.engine.job(spec.id)
    assert st is not None and st.state == "succeeded", explain(e.engine, e.ws, spec.id)
    # the store has the sweep's final record (the engine persists results before the state)
    await wait_for(lambda: (e.store.get_job(spec.id) or {}).get("state") == "succeeded", 5, "store record", detail=job_states(e.engine))
    return spec, trials_of(e.engine, spec.id)


async def test_sweep_job_runs_each_trial_as_an_engine_job_and_a_rerun_continues(env: Env) -> None:
    t0 = time.monotonic()
    e = env
    sweep1, trials1 = await run_sweep_job(e, {**TINY, "mode": "quick", "max_runs": 1})
    # the trial is its own train job in the engine (visible, the sweep as parent) and succeeded
    assert len(trials1) == 1, [(j.id, j.kind, j.parent) for j in e.engine.jobs()]
    (j,) = trials1
    assert j.state == "succeeded", explain(e.engine, e.ws, j.id)
    assert j.model == "toto" and list(j.symbols) == [SYMBOL]
    rec = e.store.get_job(j.id)
    assert rec is not None and rec["state"] == "succeeded" and rec["parent"] == sweep1.id
    assert e.engine.curve(j.id), "the trial's loss events reached the engine"
    # the study persisted in the workspace, one COMPLETE trial per job, with the job id recorded
    study = load_study(e.ws, "quick")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 1 and done[0].user_attrs["job_id"] == j.id
    summary = e.store.get_job(sweep1.id)["result"]["summary"]
    assert summary["studies"][SYMBOL]["trials"]["complete"] == 1
    assert summary["studies"][SYMBOL]["best"]["value"] == pytest.approx(done[0].value)

    # a new sweep job with a larger budget continues the same study: only a missing point runs
    sweep2, trials2 = await run_sweep_job(e, {**TINY, "mode": "quick", "max_runs": 2})
    assert len(trials2) == 1 and trials2[0].state == "succeeded"
    study = load_study(e.ws, "quick")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    points = [(t.params["lr"], t.params["lora_rank"]) for t in done]
    assert len(set(points)) == 2, "a finished grid point ran again"
    # every trial's run is in the tracker with the trial's hyperparameters and its value
    runs = {r["job_id"]: r for r in e.store.runs(model="toto", symbol=SYMBOL)}
    assert set(runs) == {j.id, trials2[0].id}
    for t in done:
        run = runs[t.user_attrs["job_id"]]
        hp = run["hyperparams"]
        assert hp["lr"] == t.params["lr"] and hp["lora_rank"] == t.params["lora_rank"]
        assert hp["context"] == 64 and hp["horizon"] == 16 and hp["epochs"] == 1 and hp["max_steps_per_epoch"] == 2
        assert run["metrics"]["val_mae_pct"] == pytest.approx(t.value)
        assert run["checkpoint"] and Path(run["checkpoint"]).is_dir()

    print(f"\nlocal sweep e2e: {time.monotonic() - t0:.1f} s")


async def test_cancel_sweep_cancels_its_trial_and_the_next_run_resumes_it(env: Env) -> None:
    """Queued trial: cancelled with the sweep. The next run resubmits that same trial (same
    settings + `resume`) instead of skipping or duplicating it; cancelling that run stops the now
    running trial within the grace period, and the trial is still kept for the run after."""
    t0 = time.monotonic()
    e = env
    long = {**TINY, "epochs": 400, "max_steps_per_epoch": 4, "patience": 1000}  # never finishes within the test
    # a blocker takes the only CPU slot, so the sweep's first trial waits in the queue
    blocker = JobSpec.create("baseline", [SYMBOL], params={"_test": {"steps": 600, "sleep": 0.1}})
    e.engine.submit(blocker)
    sweep = JobSpec.create("sweep", [SYMBOL], "toto", params={**long, "mode": "quick", "max_runs": 1})
    e.engine.submit(sweep)
    await wait_for(lambda: len(trials_of(e.engine, sweep.id)) == 1, 30, "the first trial job", detail=job_states(e.engine))
    (queued,) = trials_of(e.engine, sweep.id)
    assert queued.state == "queued"
    e.engine.cancel(sweep.id)
    await wait_for(lambda: finished(e.engine, sweep.id) and finished(e.engine, queued.id), 15,
                   "sweep and trial to end", detail=job_states(e.engine))
    assert e.engine.job(sweep.id).state == "cancelled"  # type: ignore[union-attr]
    assert e.engine.job(queued.id).state == "cancelled"  # type: ignore[union-attr]
    study = load_study(e.ws, "quick")
    (t,) = [t for t in study.trials if t.state.name != "WAITING"]
    assert t.state.name == "RUNNING" and t.user_attrs["interrupted"] and t.user_attrs["job_id"] == queued.id
    e.engine.cancel(blocker.id)

    # the next run resumes that trial with its exact settings; cancel it once it trains
    sweep2 = JobSpec.create("sweep", [SYMBOL], "toto", params={**long, "mode": "quick", "max_runs": 1})
    e.engine.submit(sweep2)
    await wait_for(lambda: any(e.engine.curve(j.id) for j in trials_of(e.engine, sweep2.id)), 45,
                   "the resumed trial to train", detail=job_states(e.engine))
    (running,) = trials_of(e.engine, sweep2.id)
    spec_q, spec_r = e.engine.spec(queued.id), e.engine.spec(running.id)
    assert spec_q is not None and spec_r is not None
    assert spec_r.params == {**spec_q.params, "resume": True}
    assert running.state == "running"
    e.engine.cancel(sweep2.id)
    await wait_for(lambda: finished(e.engine, sweep2.id) and finished(e.engine, running.id), 15,
                   "sweep and running trial to end", detail=job_states(e.engine))
    assert e.engine.job(running.id).state == "cancelled"  # type: ignore[union-attr]
    assert e.engine.job(sweep2.id).state == "cancelled"  # type: ignore[union-attr]
    assert "sweep cancelled: cancelling trial job" in "\n".join(e.engine.log_tail(sweep2.id))
    assert len(trials_of(e.engine, sweep2.id)) == 1  # nothing new after the cancel
    study = load_study(e.ws, "quick")
    (t,) = [t for t in study.trials if t.state.name != "WAITING"]
    assert t.state.name == "RUNNING" and t.user_attrs["interrupted"]
    assert t.user_attrs["job_ids"] == [queued.id, running.id]
    ckpt = [d for d in (e.ws / "runs").iterdir() if (d / "checkpoint").is_dir()]
    assert ckpt, "the cancelled trial kept its checkpoint for the resume"
    print(f"\nlocal sweep cancel e2e: {time.monotonic() - t0:.1f} s")


def test_sweep_job_refuses_params_it_would_ignore(tmp_path: Path) -> None:
    """Pinning a searched setting or a typo fails before any trial is queued: at JobSpec.create
    (engine.task_params), and again in the task for a spec that did not come through it."""
    from dataclasses import replace

    from engine.events import EventWriter
    from engine.jobs import JobSpecError
    from engine.tasks import sweep
    from engine.tasks.context import TaskContext

    for params, msg, at_create in (({"lr": 1e-3}, "what the sweep searches", True),
                                   ({"max_step": 3}, "unknown parameter", True),
                                   ({"mode": "grid"}, "'mode' must be 'priority', 'quick', 'full' or 'auto'", True),
                                   ({"vram_gb": -1}, "'vram_gb' must be greater than or equal to 0", True)):
        if at_create:
            with pytest.raises(JobSpecError, match=msg):
                JobSpec.create("sweep", [SYMBOL], "toto", params=params)
        spec = replace(JobSpec.create("sweep", [SYMBOL], "toto"), params=params)
        jd = tmp_path / "jobs" / spec.id
        jd.mkdir(parents=True)
        ctx = TaskContext(job_id=spec.id, workspace=tmp_path, job_dir=jd,
                          events=EventWriter(jd / "events.jsonl", spec.id))
        with pytest.raises(sweep.SweepError, match=msg):
            sweep.run(spec, ctx)
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "jobs" / "inbox").exists()
    # valid params, but no engine watches this workspace (as in a shipped Ray job): refused up front
    with pytest.raises(sweep.SweepError, match="must run in its engine's workspace"):
        sweep.run(JobSpec.create("sweep", [SYMBOL], "toto", params={"mode": "quick"}), ctx)
    assert not (tmp_path / "sweeps").exists()


async def test_a_trial_the_engine_refuses_stops_the_sweep_and_is_not_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials asking for more VRAM than any GPU has are refused by the engine (rejected.txt); the
    sweep fails at once naming the reason instead of waiting forever or burning its budget."""
    from engine.backends.local import LocalBackend
    from engine.gpu import FakeGpuSource
    from store import Store

    ws = setup_env(tmp_path, monkeypatch)
    store = Store.open(ws)
    engine = Engine(ws, store=store, backend=LocalBackend(), cpu_slots=2, poll_interval=0.1,
                    gpu_source=FakeGpuSource(1, 24.0), env=HOOK_ENV)
    await engine.start()
    try:
        spec = JobSpec.create("sweep", [SYMBOL], "toto", params={**TINY, "mode": "quick", "max_runs": 1,
                                                                  "vram_gb": 100})
        engine.submit(spec)
        await wait_for(lambda: finished(engine, spec.id), 40, "the sweep to fail", detail=job_states(engine))
        st = engine.job(spec.id)
        assert st is not None and st.state == "failed"
        assert "refused trial job" in (st.reason or "") and "largest GPU has 24.0 GB" in (st.reason or "")
        assert not [j for j in engine.jobs() if j.kind == "train"]
        study = load_study(ws, "quick")
        failed = [t for t in study.trials if t.state.name == "FAIL"]
        waiting = [t for t in study.trials if t.state.name == "WAITING"]
        assert len(failed) == 1 and failed[0].user_attrs["rejected"]
        # the refused point is queued again, so a fixed re-run still tries it
        assert any(t.system_attrs.get("fixed_params") == failed[0].params for t in waiting)
    finally:
        await engine.stop(cancel_running=True)
        store.close()


class LosingRunner:
    """A runner whose first job vanishes (the engine died between taking the inbox marker and
    recording it); later jobs finish at once with a result."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.submitted: list[JobSpec] = []

    def submit(self, spec: JobSpec) -> str:
        from engine.events import EventWriter

        self.submitted.append(spec)
        if len(self.submitted) > 1:
            jd = self.workspace / "jobs" / spec.id
            jd.mkdir(parents=True, exist_ok=True)
            ev = EventWriter(jd / "events.jsonl", spec.id)
            ev.loss(step=1, epoch=0, train=1.0, val=0.5)
            ev.result({"runs": [{"metrics": {"val_mae_pct": 2.5}}]})
            ev.close()
        return spec.id

    def state(self, job_id: str) -> str | None:
        return "succeeded" if job_id != self.submitted[0].id else "queued"  # SpoolRunner's answer for unknown

    def exists(self, job_id: str) -> bool:
        return job_id != self.submitted[0].id

    def events(self, job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        from engine.runners import Runner

        return Runner.events(self, job_id, offset)  # type: ignore[arg-type]

    def result(self, job_id: str) -> dict[str, Any] | None:
        from engine.runners import Runner

        return Runner.result(self, job_id)  # type: ignore[arg-type]

    def reason(self, job_id: str) -> str | None:
        return None

    def cancel(self, job_id: str) -> None:
        raise AssertionError("nothing should be cancelled")


def test_a_lost_trial_job_is_resubmitted_and_a_study_runs_one_sweep_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.tasks import sweep

    monkeypatch.setattr(sweep, "LOST_AFTER_S", 0.3)
    r = LosingRunner(tmp_path)
    out = sweep.run_sweep(r, tmp_path, model="toto", symbol=SYMBOL, mode="quick", max_runs=1, epochs=1,  # type: ignore[arg-type]
                          log=lambda m: None, poll=0.05)
    assert out["trials"]["complete"] == 1 and len(r.submitted) == 2
    assert r.submitted[1].params == {**r.submitted[0].params, "resume": True}
    assert out["trial_table"][0]["job_ids"] == [s.id for s in r.submitted]
    # a second coordinator of the same study is refused, naming the one that holds it
    name = sweep.study_name("toto", SYMBOL, "tiny", 16, "quick")
    with sweep.study_lock(tmp_path, name, "job 20250101-sweep-abc"), \
            pytest.raises(sweep.SweepError, match="being run by another sweep.*job 20250101-sweep-abc"):
        sweep.run_sweep(LosingRunner(tmp_path), tmp_path, model="toto", symbol=SYMBOL, mode="quick",  # type: ignore[arg-type]
                        max_runs=2, log=lambda m: None)


def test_kronos_sweeps_only_its_native_loss() -> None:
    from engine.tasks import sweep, sweep_space

    for mode in ("priority", "full"):
        pts = sweep_space.grid_points(mode, "kronos")
        assert pts and {p["loss"] for p in pts} == {"native"}
        assert len(pts) == len({json.dumps(p, sort_keys=True) for p in pts})  # no duplicate after the mapping
    assert sweep.trial_budget("full", None, "kronos") == 4 * 3 * 2
    assert sweep.trial_budget("full", None, "toto") == 4 * 3 * 3 * 2


def test_coordinator_jobs_hold_no_cpu_slot() -> None:
    """Two sweeps on a one-slot engine must not starve their own trials."""
    from engine.scheduler import Scheduler

    sch = Scheduler(cpu_slots=1)
    specs = [JobSpec.create("sweep", [SYMBOL], "toto"), JobSpec.create("sweep", [SYMBOL], "kronos"),
             JobSpec.create("train", [SYMBOL], "toto"), JobSpec.create("train", [SYMBOL], "kronos")]
    for s in specs:
        sch.push(s)
    admitted = [s.id for s, _ in sch.admit(None)]
    assert admitted == [s.id for s in specs[:3]] and sch.cpu_in_use() == 1
    sch.release(specs[0].id)
    assert sch.admit(None) == []  # a coordinator ending frees no slot: the train job still waits
    sch.release(specs[2].id)
    assert [s.id for s, _ in sch.admit(None)] == [specs[3].id]
