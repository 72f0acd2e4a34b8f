"""Models own their knowledge: a new model is one adapter class plus its line in engine.models.ADAPTERS.

A fake adapter declared here (a damped-drift forecaster, no weights) is registered and runs through
the real validate and compare tasks, with no task code touched; the built-in adapters' declarations
are what the planner and the tasks read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from engine import models
from engine.forecasters.base import DrawGroup, Forecast, Forecaster, grid_values
from engine.forecasters.registry import adapter_class
from engine.tasks import compare, validate
from tests.test_eval_support import make_ctx, spec, write_csv


class FakeForecaster(Forecaster):
    """Last close plus a damped share of the context's drift, with Gaussian spread."""

    name: ClassVar[str] = "fakecast"
    preset_contexts: ClassVar[dict[str, int]] = {"tiny": 24, "pretrained": 48}
    calls: ClassVar[int] = 0

    def __init__(self, preset: str = "tiny", device: str = "cpu", **_: Any) -> None:
        self.preset = preset

    @classmethod
    def default_config(cls, preset: str = "tiny") -> dict[str, Any]:
        return {"num_samples": 4, "aggregation": "median", "damping": 0.5}

    @classmethod
    def search_space(cls, *, context: int, preset: str = "tiny", full: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DrawGroup]:
        o = dict(overrides or {})
        return [DrawGroup({"damping": d}, context, [2, 4], ["mean", "median"])
                for d in grid_values(o, "damping", [0.0, 0.5, 1.0] if full else [0.0, 1.0])]

    def forecast(self, windows: Any, num_samples: int = 1, *, seed: int = 0, damping: float = 0.5,
                 **params: Any) -> Forecast:
        type(self).calls += 1
        t0 = time.perf_counter()
        cc = np.asarray(windows.context, dtype=np.float64)[:, :, 3]
        slope = (cc[:, -1] - cc[:, 0]) / max(1, cc.shape[1] - 1)
        steps = np.arange(1, windows.horizon + 1, dtype=np.float64)
        point = cc[:, -1:] + damping * slope[:, None] * steps[None, :]
        rng = np.random.default_rng(seed)
        spread = rng.standard_normal((cc.shape[0], num_samples, windows.horizon)) * 0.001 * cc[:, -1:, None]
        return Forecast(samples=point[:, None, :] + spread, latency_s=time.perf_counter() - t0)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(models.ADAPTERS, "fakecast", (__name__, "FakeForecaster"))
    FakeForecaster.calls = 0
    return "fakecast"


def test_a_registered_adapter_runs_through_validate_and_compare(fake: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=260, seed=2)
    ws = tmp_path / "ws"
    common = {"horizon": 8, "val_windows": 10, "test_windows": 10, "stride": 2}
    out = validate.run(spec("validate", ["AAA"], fake, **common), make_ctx(tmp_path, data, "validate", ws=ws))
    (pick,) = out["picks"]
    assert pick["model"] == fake and pick["candidates"] == 2 * 2 * 2  # damping × sizes × aggregations
    assert pick["config"]["damping"] in (0.0, 1.0) and FakeForecaster.calls >= 2
    res = compare.run(spec("compare", ["AAA"], None, models=[fake], **common),
                      make_ctx(tmp_path, data, "compare", ws=ws))
    by_model = {r["model"]: r for r in res["comparisons"]}
    assert set(by_model) == {"naive", fake}
    row = by_model[fake]
    # no pick recorded (the engine, not the task, writes picks to the store): the adapter's default config
    assert row["config"] == FakeForecaster.default_config("tiny") and row["source"] == "default"
    assert row["windows"] == by_model["naive"]["windows"]  # and the same test windows as naive
    assert np.isfinite(row["test"]["mae_pct"]) and np.isfinite(row["validation"]["mae_pct"])


def test_tasks_ask_the_adapter_for_default_config_grid_and_context(fake: str) -> None:
    assert compare.default_config(fake, "tiny") == FakeForecaster.default_config("tiny")
    assert validate.default_context("tiny", fake) == 24
    assert len(validate.search_space(fake, context=24, mode="full")) == 3
    with pytest.raises(Exception, match="unknown aggregation"):
        validate.search_space(fake, context=24, overrides={"aggregations": ["bogus"]})


def test_builtin_adapters_declare_their_knowledge_torch_free() -> None:
    import subprocess

    code = ("import sys; from engine.forecasters.registry import adapter_class; from engine.models import MODELS; "
            "cards = {m: adapter_class(m) for m in MODELS}; "
            "assert all(c.default_config('tiny') for c in cards.values()); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert adapter_class("toto").patch_sizes == {"tiny": 16, "pretrained": 64}
    assert adapter_class("kronos").max_window == 512 and adapter_class("kronos").supported_losses == ("native",)
    assert adapter_class("kronos").weight_ids() == ["NeoQuasar/Kronos-small", "NeoQuasar/Kronos-Tokenizer-base"]
    assert not adapter_class("naive").trainable and adapter_class("chronos2").trainable
    for m in models.MODELS:
        for mode in ("quick", "full"):
            for preset in ("tiny", "pretrained"):
                assert validate.search_space(m, context=64, preset=preset, mode=mode), (m, mode, preset)
