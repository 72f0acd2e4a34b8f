"""Toto imported and sampled without the modules its forecast never runs: same floats as upstream."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.forecasters import toto as toto_mod
from engine.forecasters.deferred_imports import DeferredName, names_deferred
from engine.forecasters.training import windows_from_close

torch.set_num_threads(1)


def test_sampler_draws_the_same_floats_as_upstreams_affine_transformed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`AffineSample` replaces gluonts' AffineTransformed in upstream's sampling loop; a tiny toto
    (per-step loc/scale from its causal scaler) must forecast bit-equal samples with either."""
    from toto.inference.forecaster import TotoForecaster as Upstream

    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(0, 1, 300))
    w = windows_from_close(close, 200, 300, 64, 16, span="val", train_end=200).subset(np.arange(3))
    fc = toto_mod.TotoForecaster("tiny")
    ours = fc.forecast(w, num_samples=8, seed=5).samples
    monkeypatch.setattr(toto_mod, "upstream_sampler", lambda: Upstream)
    theirs = fc.forecast(w, num_samples=8, seed=5).samples
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours, fc.forecast(w, num_samples=8, seed=6).samples)  # the seed matters


def test_toto_import_leaves_no_stand_in_and_deferred_scipy_names_still_work() -> None:
    toto_mod._import_toto()
    from gluonts.torch.distributions.studentT import ScipyStudentT, StudentT

    stats = sys.modules.get("scipy.stats")
    assert stats is None or hasattr(stats, "__file__")  # absent or the real module, never the stand-in
    d = StudentT(torch.tensor(3.0), torch.tensor(0.5), torch.tensor(2.0))
    import scipy.stats

    got = d.cdf(torch.tensor([0.0, 1.5])).numpy()
    assert np.allclose(got, scipy.stats.t(3.0, 0.5, 2.0).cdf([0.0, 1.5]))  # the deferred name resolves
    if isinstance(ScipyStudentT, DeferredName):
        assert ScipyStudentT.resolve() is scipy.stats.t
    fg = sys.modules.get("gluonts.model.forecast_generator")
    assert fg is None or hasattr(fg, "__file__")
    from gluonts.torch.distributions.studentT import StudentTOutput

    assert type(StudentTOutput().forecast_generator).__name__ == "DistributionForecastGenerator"  # resolves


def test_names_deferred_binds_listed_names_lazily_and_anything_else_imports_the_module(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d3_heavy.py").write_text("LOADS = []\nLOADS.append(1)\nVALUE = 41\ndef inc(x):\n    return x + 1\n")
    (tmp_path / "d3_user.py").write_text("from d3_heavy import inc\n")
    (tmp_path / "d3_other.py").write_text("from d3_heavy import VALUE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in ("d3_heavy", "d3_user", "d3_other"):
        monkeypatch.delitem(sys.modules, m, raising=False)
    with names_deferred("d3_heavy", ("inc",)):
        import d3_user
    assert isinstance(d3_user.inc, DeferredName) and "d3_heavy" not in sys.modules  # not imported yet
    assert d3_user.inc(1) == 2 and sys.modules["d3_heavy"].LOADS == [1]  # first call imports it, once
    monkeypatch.delitem(sys.modules, "d3_heavy")
    with names_deferred("d3_heavy", ("inc",)):
        import d3_other  # a name not listed: the real module, imported now
        assert hasattr(sys.modules["d3_heavy"], "__file__")
    assert d3_other.VALUE == 41
