"""Helpers shared by the evaluation-job tests, plus unit tests of engine.evaluation / engine.ensembles.

The helpers write real CSV files and real job directories (EventWriter) so tasks run exactly as the
worker runs them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import evaluation as ev
from engine.ensembles import combine, top_k_members, trimmed_mean
from engine.events import EventWriter
from engine.jobs import JobSpec
from engine.tasks.context import TaskContext


def write_csv(path: Path, n: int = 260, seed: int = 0, drift: float = 0.0005, vol: float = 0.02) -> Path:
    """A random-walk daily OHLCV file (business days)."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(drift + vol * rng.standard_normal(n)))
    open_ = close * (1 + 0.002 * rng.standard_normal(n))
    high = np.maximum(open_, close) * 1.01
    low = np.minimum(open_, close) * 0.99
    ts = pd.bdate_range("2020-01-01", periods=n)
    df = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d"), "open": open_, "high": high, "low": low,
                       "close": close, "volume": rng.integers(1000, 5000, n)})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def make_ctx(tmp: Path, data_dir: Path, kind: str = "validate", ws: Path | None = None) -> TaskContext:
    ws = ws or tmp / "ws"
    job_dir = ws / "jobs" / f"job-{kind}"
    job_dir.mkdir(parents=True, exist_ok=True)
    return TaskContext(job_id=f"job-{kind}", workspace=ws, job_dir=job_dir,
                       events=EventWriter(job_dir / "events.jsonl", f"job-{kind}"), data_dirs=[data_dir])


def events_of(ctx: TaskContext) -> list[dict]:
    return [json.loads(x) for x in (ctx.job_dir / "events.jsonl").read_text().splitlines() if x.strip()]


def spec(kind: str, symbols: list[str], model: str | None = None, **params: object) -> JobSpec:
    return JobSpec.create(kind, symbols, model, params=params)


# ---------------------------------------------------------------------------------------------


def test_select_best_uses_validation_metric_and_breaks_ties_by_cost() -> None:
    a = ev.Candidate({"n": 1}, {"mae_pct": 2.0}, cost=1)
    b = ev.Candidate({"n": 2}, {"mae_pct": 1.0}, cost=5)
    c = ev.Candidate({"n": 3}, {"mae_pct": 1.0}, cost=2)
    d = ev.Candidate({"n": 4}, {"mae_pct": None}, cost=0)
    assert ev.select_best([a, b, c, d]).config == {"n": 3}
    assert [x.config["n"] for x in ev.rank([a, b, c, d])] == [3, 2, 1, 4]
    with pytest.raises(ev.EvaluationError, match="no candidates"):
        ev.select_best([])
    with pytest.raises(ev.EvaluationError, match="cannot select on"):
        ev.select_best([a], "dm_p_two_sided")


def test_sample_bank_reuses_prefixes_only_for_draws_that_nest(tmp_path: Path) -> None:
    from engine.data import load_csv, make_windows, split_spans
    from engine.forecasters.base import Forecast, window_rngs

    s = load_csv(write_csv(tmp_path / "AAA.csv"), "AAA")
    w = make_windows(s, split_spans(s.n_rows, 4), "val", 16, 4, max_windows=5)

    class Noisy:
        """One generator for the whole call, window-major: window 1's samples start where window 0's
        end, so a draw of 3 is NOT the first 3 samples of a draw of 8 (its draws do not nest)."""

        name = "noisy"

        def forecast(self, windows, num_samples=1, *, seed=0, **params):  # type: ignore[no-untyped-def]
            rng = np.random.default_rng(seed)
            return Forecast(samples=rng.standard_normal((windows.n, num_samples, windows.horizon)), latency_s=0.1)

    class Nested(Noisy):
        """Each window's samples from its own generator, sample-major: a draw of n is a prefix."""

        nested_draws = True

        def forecast(self, windows, num_samples=1, *, seed=0, **params):  # type: ignore[no-untyped-def]
            u = np.stack([g.standard_normal((num_samples, windows.horizon)) for g in window_rngs(seed, windows.origins)])
            return Forecast(samples=u, latency_s=0.1)

    fresh = {n: Noisy().forecast(w, n).samples for n in (3, 8)}
    assert not np.array_equal(fresh[3], fresh[8][:, :3])  # the prefix would be another sample
    bank = ev.SampleBank(Noisy())  # type: ignore[arg-type]
    small_first = bank.draw("val", w, 3).samples
    assert np.array_equal(bank.draw("val", w, 8).samples, fresh[8]) and bank.calls == 2
    # each num_samples is its own draw: what a config gets depends neither on the order nor on other sizes
    assert np.array_equal(bank.draw("val", w, 3).samples, fresh[3]) and np.array_equal(small_first, fresh[3])
    assert bank.calls == 2  # ...and each is cached
    assert np.array_equal(ev.SampleBank(Noisy()).draw("val", w, 3).samples, fresh[3])  # type: ignore[arg-type]

    nb = ev.SampleBank(Nested())  # type: ignore[arg-type]
    big = nb.draw("val", w, 8).samples
    small = nb.draw("val", w, 3).samples
    assert nb.calls == 1 and np.array_equal(small, big[:, :3])
    assert np.array_equal(small, Nested().forecast(w, 3).samples)  # the prefix is the fresh draw
    nb.draw("val", w, 16)
    assert nb.calls == 2
    nb.draw("val", ev.truncate_context(w, 8), 4)
    assert nb.calls == 3  # a different context is a different draw
    t = ev.truncate_context(w, 8)
    assert t.context.shape == (5, 8, 5) and np.array_equal(t.targets, w.targets)
    assert np.array_equal(t.context[:, -1], w.context[:, -1])


def test_calibration_is_affine_in_return_space() -> None:
    last = np.array([100.0, 50.0])
    point = np.array([[110.0, 120.0], [55.0, 45.0]])
    out = ev.apply_calibration(point, last, {"scale": 0.5, "bias": 0.01})
    assert np.allclose(out, [[100 * (1 + 0.05 + 0.01), 100 * (1 + 0.1 + 0.01)], [50 * 1.06, 50 * (1 - 0.05 + 0.01)]])
    samples = np.stack([point, point * 2], axis=1)  # [2, 2, 2]
    cs = ev.calibrate_samples(samples, last, {"scale": 0.5, "bias": 0.01})
    assert np.allclose(cs[:, 0, :], out)
    assert ev.apply_calibration(point, last, None) is point


def test_improvement_and_ensembles() -> None:
    assert ev.improvement_pct(8.0, 10.0) == pytest.approx(20.0)
    assert ev.improvement_pct(1.0, None) is None
    assert top_k_members({"a": 3.0, "b": 1.0, "c": float("nan"), "d": 2.0}, 2) == ["b", "d"]
    pts = {"a": np.ones((2, 3)), "b": 3 * np.ones((2, 3))}
    smp = {"a": np.ones((2, 4, 3)), "b": np.ones((2, 2, 3))}
    p, s = combine(pts, smp, ["a", "b"])
    assert np.allclose(p, 2.0) and s.shape == (2, 4, 3)
    x = np.arange(10, dtype=float).reshape(1, 10, 1)
    x[0, 9, 0] = 1e6
    assert math.isclose(float(trimmed_mean(x, 10)[0, 0]), np.mean(np.arange(1, 9)))
    with pytest.raises(ValueError, match="no forecasts"):
        combine(pts, smp, ["a", "zz"])
