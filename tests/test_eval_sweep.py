"""sweep: Optuna study in <workspace>/sweeps (sqlite), trials as train job specs, per-epoch pruning
from the jobs' loss events, max_runs, and continuing a study instead of repeating it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import EventWriter
from engine.jobs import JobSpec
from engine.runners import Runner
from engine.tasks import sweep, sweep_space
from tests.test_pipeline import ScriptedRunner


class TrainingRunner(ScriptedRunner):
    """Writes each submitted train job's events like a worker would: per-epoch val loss, then a
    result whose run has val_mae_pct = 1000 * lr (so a lower lr is better)."""

    def __init__(self, workspace: Path, bad_after: int | None = None) -> None:
        super().__init__(workspace)
        self.bad_after = bad_after
        self.cancelled: list[str] = []

    def submit(self, spec: JobSpec) -> str:
        jid = super().submit(spec)
        job_dir = self.workspace / "jobs" / jid
        job_dir.mkdir(parents=True, exist_ok=True)
        ev = EventWriter(job_dir / "events.jsonl", jid)
        lr = float(spec.params["lr"])
        n = len(self.submitted)
        bad = self.bad_after is not None and n > self.bad_after
        for epoch in range(spec.params["epochs"]):
            ev.loss(step=epoch, epoch=epoch, train=1.0, val=(10.0 if bad else 1.0 / (epoch + 1)))
        ev.result({"runs": [{"model": spec.model, "symbol": spec.symbols[0], "hyperparams": spec.params,
                             "metrics": {"val_mae_pct": 1000 * lr, "val_loss": 1.0}}]})
        ev.close()
        return jid

    def result(self, job_id: str) -> dict | None:
        return Runner.result(self, job_id)  # read back from the events file, like the real runners

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        super().cancel(job_id)


def test_priority_mode_runs_research_configs_and_continues(tmp_path: Path) -> None:
    r = TrainingRunner(tmp_path)
    out = sweep.run_sweep(r, tmp_path, model="toto", symbol="AAA", mode="priority", max_runs=3, epochs=2,
                          log=lambda m: None)
    assert (tmp_path / "sweeps" / f"{out['study']}.db").exists()
    assert out["trials"]["complete"] == 3 and len(r.submitted) == 3
    lrs = [s.params["lr"] for s in r.submitted]
    assert lrs == [c["lr"] for c in sweep_space.PRIORITY_CONFIGS[:3]]
    assert all(s.kind == "train" and s.model == "toto" and s.params["preset"] == "tiny" for s in r.submitted)
    assert r.submitted[2].params["epochs"] == 3  # epoch_scale 1.5 of 2
    assert out["best"]["value"] == pytest.approx(1000 * min(lrs))
    # a restart with a larger budget continues the same study: only the remaining configs run
    r2 = TrainingRunner(tmp_path)
    out2 = sweep.run_sweep(r2, tmp_path, model="toto", symbol="AAA", mode="priority", max_runs=5, epochs=2,
                           log=lambda m: None)
    assert len(r2.submitted) == 2 and out2["trials"]["complete"] == 5
    assert [s.params["lr"] for s in r2.submitted] == [c["lr"] for c in sweep_space.PRIORITY_CONFIGS[3:5]]


def test_quick_grid_and_auto_pruning(tmp_path: Path) -> None:
    r = TrainingRunner(tmp_path)
    out = sweep.run_sweep(r, tmp_path, model="toto", symbol="AAA", mode="quick", epochs=1, log=lambda m: None)
    assert out["trials"]["complete"] == 4
    assert sorted((s.params["lr"], s.params["lora_rank"]) for s in r.submitted) == [
        (1e-4, 8), (1e-4, 16), (3e-4, 8), (3e-4, 16)]
    # auto: after the first trials, a trial whose val loss is far above the median is pruned and its job cancelled
    ra = TrainingRunner(tmp_path, bad_after=3)
    out = sweep.run_sweep(ra, tmp_path, model="toto", symbol="BBB", mode="auto", max_runs=5, epochs=3,
                          log=lambda m: None)
    assert out["trials"]["pruned"] >= 1 and ra.cancelled


def test_bad_sweep_input(tmp_path: Path) -> None:
    r = TrainingRunner(tmp_path)
    with pytest.raises(sweep.SweepError, match="'mode' must be 'priority', 'quick', 'full' or 'auto'"):
        sweep.run_sweep(r, tmp_path, model="toto", symbol="AAA", mode="grid")
    with pytest.raises(sweep.SweepError, match="max_runs"):
        sweep.run_sweep(r, tmp_path, model="toto", symbol="AAA", mode="quick", max_runs=0)
    assert r.submitted == [] and not (tmp_path / "sweeps").exists()
