"""Seeds a workspace with tracked runs as the engine records them: a train run (run folder with a
curve, an adapter and config), a validate run of that adapter (val/test metrics with their window
specs), the pick it made (naming the train run as its source) and that pick promoted. Fixed times
and ids (the snapshot tests render them), written through the real Store.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC
TRAIN_JOB = "20250615-150500-000-train-0000eeee"
VALIDATE_JOB = "20250615-151000-000-validate-0000dddd"
WINDOWS = {"val_windows": {"span": "val", "count": 12, "stride": 4, "rows_covered": 60, "first_origin": 300,
                           "last_origin": 344},
           "test_windows": {"span": "test", "count": 12, "stride": 4, "rows_covered": 60, "first_origin": 364,
                            "last_origin": 408}}


def _job(jid: str, kind: str, model: str, started: float, finished: float) -> dict[str, Any]:
    from engine.jobs import JobSpec

    spec = JobSpec(id=jid, kind=kind, symbols=("SPY",), model=model, params={"preset": "tiny"}, created_at=started)
    return {"id": jid, "kind": kind, "symbols": ["SPY"], "model": model, "state": "succeeded", "priority": 0,
            "attempt": 1, "created_at": started, "started_at": started, "finished_at": finished,
            "spec": spec.to_dict(), "device": "cpu"}


def seed_runs(ws: Path, hp: Path, extra_runs: int = 0) -> dict[str, str]:
    """Returns {"train": run id, "validate": run id}; `extra_runs` more kronos/AAPL runs (no job)."""
    with pytest.MonkeyPatch.context() as mp:
        return _seed(ws, hp, mp, extra_runs)


def _seed(ws: Path, hp: Path, monkeypatch: pytest.MonkeyPatch, extra_runs: int) -> dict[str, str]:
    from store import Store, decisions, promotion, tracker

    clock = {"t": T0}
    ids = iter(f"2025061{i // 100}-{i:06d}-000-{'x'}-{i:08x}" for i in range(10_000))

    def fake_id(model: str) -> str:
        return next(ids).replace("-x-", f"-{model}-")

    fake_time = SimpleNamespace(time=lambda: clock["t"])
    for mod in (tracker, decisions, promotion):
        monkeypatch.setattr(mod, "time", fake_time)
    monkeypatch.setattr(tracker, "new_run_id", fake_id)
    run_dir = ws / "runs" / "toto-tiny-SPY-1a2b3c4d"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    (run_dir / "config.json").write_text(json.dumps({"model": "toto", "symbol": "SPY"}))
    (run_dir / "curve.jsonl").write_text("".join(
        json.dumps({"step": s, "epoch": (s - 1) // 10, "train": round(1.0 / (1 + 0.1 * s), 4),
                    **({"val": round(1.1 / (1 + 0.08 * s), 4)} if s % 10 == 0 else {})}) + "\n"
        for s in range(1, 41)))
    st = Store.open(ws, hyperparams_dir=hp)
    try:
        st.put_jobs([_job(TRAIN_JOB, "train", "toto", T0 - 100, T0), _job(VALIDATE_JOB, "validate", "toto", T0 + 10, T0 + 40)])
        train = st.log_run("toto", "SPY", {"preset": "tiny", "lr": 3e-4, "context": 128, "horizon": 16},
                           {"val_loss": 0.2657, "train_loss": 0.2, "best_epoch": 3, "val_mae_pct": 4.12},
                           checkpoint=str(run_dir / "adapter"), training_time=98.5, seed=0, job_id=TRAIN_JOB,
                           extra={"run_dir": str(run_dir), "horizon": 16, "preset": "tiny",
                                  "val_windows": WINDOWS["val_windows"]})
        clock["t"] = T0 + 40
        validate = st.log_run("toto", "SPY", {"num_samples": 64, "aggregation": "median", "preset": "tiny",
                                              "horizon": 16},
                              {"val_mae_pct": 3.91, "test_mae_pct": 4.05, "val_crps": 2.1, "test_crps": 2.3},
                              checkpoint=str(run_dir / "adapter"), seed=0, job_id=VALIDATE_JOB,
                              notes="validate (quick); chosen on val, reported on test",
                              extra={**WINDOWS, "context": 128, "horizon": 16})
        for i in range(extra_runs):
            clock["t"] = T0 + 100 + i
            st.log_run("kronos", "AAPL", {"preset": "tiny", "horizon": 16}, {"val_mae_pct": 5.0 + i / 100},
                       seed=i, extra={"horizon": 16, "val_windows": WINDOWS["val_windows"]})
        st.set_pick("toto", "SPY", {"config": {"num_samples": 64, "aggregation": "median"}, "horizon": 16,
                                     "selection_metric": "mae_pct", **WINDOWS, "source_run": train,
                                     "adapter": str(run_dir / "adapter"), "context": 128,
                                     "validation": {"mae_pct": 3.91}, "test": {"mae_pct": 4.05}},
                    job_id=VALIDATE_JOB)
        st.promote("toto", "SPY", horizon=16, by="tester")
    finally:
        st.close()
    return {"train": train, "validate": validate}


def seed_forecasts(ws: Path, data_dir: Path, job_id: str = VALIDATE_JOB, symbol: str = "SPY",
                   horizon: int = 16) -> Path:
    """A forecast file as a validate job keeps it (engine.forecast_record), on the real windows of
    the symbol's CSV: naive's variant chosen on validation, and a 'toto' whose samples are a fixed
    random walk around a drifted naive (the view under test, not a model: no weights load)."""
    import numpy as np

    from engine import evaluation as ev
    from engine import forecast_record
    from store.forecasts import ForecastModel

    setup = ev.setup_from_params(symbol, {"val_windows": 12, "test_windows": 12, "stride": 4}, horizon=horizon,
                                 context=128, data_dirs=[data_dir])
    ref = ev.naive_reference(setup)
    rng = np.random.default_rng(7)
    outs, mets = {}, {}
    for span, w, naive in (("val", setup.val, ref.val_point), ("test", setup.test, ref.test_point)):
        steps = rng.normal(0.0, 0.01, size=(w.n, 32, horizon)).cumsum(axis=2)
        samples = w.last_close[:, None, None] * (1.0 + 0.002 * np.arange(1, horizon + 1) + steps)
        point = np.median(samples, axis=1)
        outs[span] = (point, samples)
        mets[span] = ev.score(w, samples, point, naive)
    models = [(ForecastModel(name="toto", source="pick", config={"num_samples": 32, "aggregation": "median"},
                             validation=mets["val"], test=mets["test"]), outs),
              (ForecastModel(name="naive", source="selected on val", config={"method": ref.method},
                             validation=ref.validation, test=ref.test),
               {"val": (ref.val_point, ref.val_point[:, None, :]), "test": (ref.test_point, ref.test_point[:, None, :])})]
    path = forecast_record.record(ws, setup, job_id, "validate", models, naive_method=ref.method)
    assert path is not None
    return path


def seed_forecast_workspace(ws: Path, hp: Path, forecast_file: Path,
                            monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A workspace with the runs and pick of `seed_runs` and a copy of a `seed_forecasts` file as the
    validate job's forecasts; $FORECAST_WORKSPACE/$FORECAST_HYPERPARAMS point at it (the module-scoped
    file is built once; each test gets its own workspace)."""
    monkeypatch.setenv("FORECAST_WORKSPACE", str(ws))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(hp))
    ids = seed_runs(ws, hp)
    dest = ws / "forecasts" / VALIDATE_JOB / forecast_file.name
    dest.parent.mkdir(parents=True)
    dest.write_bytes(forecast_file.read_bytes())
    return {"ws": ws, "hp": hp, **ids}


def offline_app(ws: Path, hp: Path) -> Any:
    """The console on `ws` without an engine service (read-only: these screens only read)."""
    from console.app import ForecastConsoleApp
    from console.services import ConsoleServices
    from engine.gpu import FakeGpuSource

    svc = ConsoleServices(ws, hyperparams_dir=hp, gpu_source=FakeGpuSource(1, 24.0))
    return ForecastConsoleApp(svc, telemetry_interval=None, start_engine=False)


async def until(pilot: Any, cond: Any, what: str, timeout: float = 10.0) -> None:
    """tests.helpers.wait_for through `pilot`, in the argument order the runs tests use."""
    from tests.helpers import wait_for

    await wait_for(cond, timeout, what, pilot=pilot)
