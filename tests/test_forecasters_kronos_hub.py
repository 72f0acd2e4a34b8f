"""Kronos cached decoding equals the uncached reference; offline loads fail fast and say what to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from engine.forecasters.hub import ModelLoadError, resolve_weights
from engine.forecasters.kronos import KronosForecaster
from engine.forecasters.kronos_decode import generate_tokens, generate_tokens_reference
from engine.forecasters.training import windows_from_close

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def kronos64() -> tuple:
    fc = KronosForecaster("tiny")
    model, tok = fc.model.double(), fc.tokenizer.double()  # float64: rounding can never flip a token
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 6, generator=g, dtype=torch.float64)
    stamps = torch.randint(0, 5, (3, 64, 5), generator=g).double()
    s1, s2 = tok.encode(x, half=True)
    return model, s1, s2, stamps


@pytest.mark.parametrize("greedy", [True, False])
@pytest.mark.parametrize("max_context", [64, 48])  # 48 < 40 + 24: the window slides mid-way
@pytest.mark.parametrize("top_k,top_p", [(0, 0.9), (5, 1.0)])
def test_cached_decoder_matches_reference_tokens(kronos64: tuple, greedy: bool, max_context: int,
                                                 top_k: int, top_p: float) -> None:
    model, s1, s2, stamps = kronos64
    kw = dict(max_context=max_context, temperature=0.8, top_k=top_k, top_p=top_p, greedy=greedy)
    a = generate_tokens(model, s1, s2, stamps, 24, generator=torch.Generator().manual_seed(7), **kw)
    b = generate_tokens_reference(model, s1, s2, stamps, 24, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    if not greedy:  # a different seed gives different paths (the test can fail)
        c = generate_tokens(model, s1, s2, stamps, 24, generator=torch.Generator().manual_seed(8), **kw)
        assert not torch.equal(a[0], c[0])


def test_kronos_forecast_cached_equals_uncached_and_returns_paths() -> None:
    close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300))
    w = windows_from_close(close, 200, 260, 48, 8, span="val")
    fc = KronosForecaster("tiny")
    fc.model.double()  # the tokenizer stays float32 (its decode casts to float32)
    a = fc.forecast(w.subset(np.arange(3)), num_samples=5, seed=2, temperature=1.0, top_p=0.9)
    b = fc.forecast(w.subset(np.arange(3)), num_samples=5, seed=2, temperature=1.0, top_p=0.9, cached=False)
    assert a.samples.shape == (3, 5, 8) and np.array_equal(a.samples, b.samples)
    assert np.ptp(a.samples, axis=1).max() > 0  # paths, not a mean repeated


def _no_network(tried: list[object]):
    """A socket.connect that records the address and refuses: offline loads must never try the network."""
    def connect(self: socket.socket, addr: object) -> None:
        tried.append(addr)
        raise OSError("network blocked by the test")
    return connect


def test_missing_weights_offline_fail_fast_with_download_command() -> None:
    """A fresh process (nothing imported yet) fails at once: no connection attempted, the message names the
    download command."""
    code = ("import socket\n"
            "tried = []\n"
            "def connect(self, addr):\n    tried.append(addr); raise OSError('network blocked by the test')\n"
            "socket.socket.connect = connect\n"
            "from engine.forecasters.registry import load_forecaster, ModelLoadError\n"
            "try:\n    load_forecaster('toto', 'pretrained')\nexcept ModelLoadError as e:\n"
            "    print(len(tried)); print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": "/nonexistent-hf-home"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    tried, msg = out.stdout.split("\n", 1)
    assert tried == "0", out.stdout + out.stderr
    assert "Datadog/Toto-Open-Base-1.0" in msg and "hf download Datadog/Toto-Open-Base-1.0" in msg


@pytest.mark.parametrize("model,hub_id", [("kronos", "NeoQuasar/Kronos-small"), ("chronos2", "amazon/chronos-2")])
def test_each_model_names_its_hub_id(monkeypatch: pytest.MonkeyPatch, model: str, hub_id: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-hf-cache")
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent-hf-cache")
    from engine.forecasters.registry import load_forecaster

    tried: list[object] = []
    monkeypatch.setattr(socket.socket, "connect", _no_network(tried))
    with pytest.raises(ModelLoadError, match=f"hf download {hub_id}"):
        load_forecaster(model, "pretrained")
    assert tried == []


def test_local_directory_errors_are_specific(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_weights("toto", str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        resolve_weights("toto", tmp_path, required=("model.safetensors",))


def test_pretrained_from_local_directory(tmp_path) -> None:
    """A local checkpoint directory loads through the pretrained preset (no hub involved)."""
    from chronos.chronos2 import Chronos2Model  # noqa: F401 - the package must be importable

    from engine.forecasters.chronos2 import Chronos2Forecaster
    from engine.forecasters.registry import load_forecaster

    tiny = Chronos2Forecaster("tiny")
    tiny.model.save_pretrained(tmp_path)
    fc = load_forecaster("chronos2", "pretrained", source=str(tmp_path))
    w = windows_from_close(np.linspace(100, 110, 200), 150, 200, 64, 16, span="val")
    assert np.array_equal(fc.forecast(w, 2).samples, tiny.forecast(w, 2).samples)
