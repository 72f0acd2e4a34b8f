"""Tiny presets of toto, kronos and chronos2: forecast shape/seeding, LoRA training, adapter round trip."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.forecasters.lora import AdapterError
from engine.forecasters.registry import load_forecaster
from engine.forecasters.training import TrainConfig, train, validation_mae_pct, windows_from_close

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
MODELS = ("toto", "kronos", "chronos2")


def _series(n: int = 700, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 5 * np.sin(2 * np.pi * t / 16) + rng.normal(0, 0.3, n)


@pytest.fixture(scope="module")
def wins() -> tuple:
    close = _series()
    tr = windows_from_close(close, 0, 500, 64, 16, stride=4)
    va = windows_from_close(close, 500, 600, 64, 16, span="val", train_end=500)
    return tr, va


@pytest.mark.parametrize("model", MODELS)
def test_tiny_forecast_is_seeded_batched_and_in_price_space(model: str, wins: tuple) -> None:
    _, va = wins
    w = va.subset(np.arange(6))
    a = load_forecaster(model, "tiny")
    b = load_forecaster(model, "tiny")  # a second load of tiny has the same weights
    fa = a.forecast(w, num_samples=4, seed=3)
    assert fa.samples.shape == (6, 4, 16) and fa.samples.dtype == np.float64
    assert np.array_equal(fa.samples, b.forecast(w, num_samples=4, seed=3).samples)
    assert not np.array_equal(fa.samples, a.forecast(w, num_samples=4, seed=4).samples)
    assert np.all(np.isfinite(fa.samples)) and 60 < np.median(fa.samples) < 140  # price scale, not z-scores


def test_chronos2_exposes_quantiles_and_samples_between_them(wins: tuple) -> None:
    fc = load_forecaster("chronos2", "tiny")
    f = fc.forecast(wins[1].subset(np.arange(3)), num_samples=200, seed=0)
    assert f.quantiles is not None and 0.5 in f.quantiles and f.quantiles[0.5].shape == (3, 16)
    lo, hi = f.quantiles[0.01], f.quantiles[0.99]
    assert np.all(f.samples >= lo[:, None, :] - 1e-9) and np.all(f.samples <= hi[:, None, :] + 1e-9)
    frac_below_median = np.mean(f.samples < f.quantiles[0.5][:, None, :])
    assert 0.4 < frac_below_median < 0.6


@pytest.mark.parametrize("model", MODELS)
def test_a_windows_samples_do_not_depend_on_the_rest_of_the_batch(model: str, wins: tuple) -> None:
    """Same seed, same window -> same forecast, whether it is forecast alone, with others, or in
    another order (per-window seeds from seed + origin)."""
    _, va = wins
    fc = load_forecaster(model, "tiny")
    full = fc.forecast(va.subset(np.arange(8)), num_samples=3, seed=5).samples
    alone = fc.forecast(va.subset([6]), num_samples=3, seed=5).samples
    mixed = fc.forecast(va.subset([6, 2, 11]), num_samples=3, seed=5).samples
    # float32 kernels may round differently at another batch size (~1e-10 relative); the random
    # draws themselves are identical, and a different draw would differ by far more than this
    same = {"rtol": 1e-7, "atol": 0.0}
    np.testing.assert_allclose(alone[0], full[6], **same)
    np.testing.assert_allclose(mixed[0], full[6], **same)
    np.testing.assert_allclose(mixed[1], full[2], **same)
    other_seed = fc.forecast(va.subset([6]), num_samples=3, seed=6).samples
    assert np.max(np.abs(other_seed[0] - full[6]) / np.abs(full[6])) > 1e-5  # the check can fail


@pytest.mark.parametrize("model", (*MODELS, "naive"))
def test_declared_nesting_holds_a_draw_of_n_is_the_first_n_of_a_larger_draw(model: str, wins: tuple) -> None:
    """What `draw_group` promises (validation scores smaller num_samples of a group on a prefix of one
    draw, and compare/forecast draw them afresh): bit for bit, across a chunk boundary of the batched call."""
    from engine.forecasters.naive import NAIVE_METHODS

    _, va = wins
    fcs = [NAIVE_METHODS[m]() for m in NAIVE_METHODS] if model == "naive" else [load_forecaster(model, "tiny")]
    for fc in fcs:
        assert fc.draw_group(3, {}) == fc.draw_group(7, {}), f"{fc.name}'s draws of 3 and 7 are expected to nest"
        w = va.subset(np.arange(10))
        # kronos batches chunk_rows // num_samples windows per chunk: 7 samples split these windows
        kw = {"chunk_rows": 21} if model == "kronos" else {}
        small = fc.forecast(w, num_samples=3, seed=5, **kw).samples
        big = fc.forecast(w, num_samples=7, seed=5, **kw).samples
        np.testing.assert_array_equal(small, big[:, :3])
        if model != "naive":  # the check can fail: samples 3..6 are other draws
            assert not np.array_equal(big[:, 3:6], small)
    if model == "toto":  # more than one sample block per upstream call nests too
        fc = fcs[0]
        assert fc.draw_group(5, {"samples_per_batch": 4}) == fc.draw_group(12, {"samples_per_batch": 4}) == 4
        a = fc.forecast(va.subset([4]), num_samples=5, seed=2, samples_per_batch=4).samples
        b = fc.forecast(va.subset([4]), num_samples=12, seed=2, samples_per_batch=4).samples
        np.testing.assert_array_equal(a, b[:, :5])


def test_toto_draws_a_few_samples_on_the_real_size_model_as_asked_and_nests_from_its_block() -> None:
    """On tiny any draw is whole blocks of 32 (per call, not per sample, is what a tiny call costs);
    on pretrained a draw of fewer than 256 samples is one block of its own size (drawing 256 for 2 on a
    real-size model cost 128x the sampling), and draws of 256 and more nest."""
    from engine.forecasters.toto import TotoForecaster, sample_block

    assert [sample_block("tiny", n) for n in (1, 4, 32, 33, 100)] == [32, 32, 32, 32, 32]
    assert [sample_block("pretrained", n) for n in (2, 100, 256, 512, 2048)] == [2, 100, 256, 256, 256]
    assert sample_block("pretrained", 1000, 512) == 512 and sample_block("pretrained", 300, 512) == 300
    with pytest.raises(ValueError, match="samples_per_batch must be >= 1"):
        sample_block("tiny", 4, -1)
    fc = load_forecaster("toto", "tiny")
    assert isinstance(fc, TotoForecaster) and fc.draw_group(4, {}) == fc.draw_group(32, {}) == 32


def test_kronos_streams_give_the_same_uniforms_whatever_the_block() -> None:
    from engine.forecasters.kronos_decode import WindowStreams

    one, many = WindowStreams(3, [7, 9], 4, block=1), WindowStreams(3, [7, 9], 4, block=5)
    a = torch.cat([one.uniforms("cpu") for _ in range(12)], dim=1)
    b = torch.cat([many.uniforms("cpu") for _ in range(12)], dim=1)
    assert a.shape == (8, 12) and torch.equal(a, b)
    fewer = WindowStreams(3, [7], 2)  # window 7's first two samples: the same streams with fewer samples
    assert torch.equal(a[:2], torch.cat([fewer.uniforms("cpu") for _ in range(12)], dim=1))


@pytest.mark.parametrize("model", MODELS)
def test_poisoned_future_rows_change_no_forecast(model: str, tmp_path: Path) -> None:
    """Rows at and after a window's origin (its targets and everything later) never reach its samples."""
    import pandas as pd

    from engine.data import load_csv, make_windows, split_spans

    close = _series(400, seed=2)
    ts = pd.bdate_range("2020-01-01", periods=400).strftime("%Y-%m-%d")
    clean = pd.DataFrame({"timestamp": ts, "close": close})
    dirty = clean.copy()
    cut = 350  # poison every row from here on: windows with origin <= cut see only clean context
    dirty.loc[cut:, "close"] = 1e4 * (1 + np.arange(400 - cut))
    clean.to_csv(tmp_path / "A.csv", index=False)
    dirty.to_csv(tmp_path / "B.csv", index=False)
    a, b = load_csv(tmp_path / "A.csv", "AAA"), load_csv(tmp_path / "B.csv", "AAA")
    spans = split_spans(400, 16, val_rows=60, test_rows=60)
    wa = make_windows(a, spans, "test", 64, 16)
    wb = make_windows(b, spans, "test", 64, 16)
    keep = np.flatnonzero(wa.origins <= cut)
    assert keep.size >= 1 and not np.array_equal(wa.targets[keep], wb.targets[keep])  # really poisoned
    fc = load_forecaster(model, "tiny")
    sa = fc.forecast(wa.subset(keep), num_samples=3, seed=2).samples
    sb = fc.forecast(wb.subset(keep), num_samples=3, seed=2).samples
    np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("model", MODELS)
def test_lora_training_lowers_loss_and_adapter_reloads_exactly(model: str, wins: tuple, tmp_path: Path) -> None:
    tr, va = wins
    fc = load_forecaster(model, "tiny")
    fc.prepare_finetune("lora", rank=4, seed=0)
    assert all("lora_" in n for n, p in fc.adapt_root().named_parameters() if p.requires_grad)
    frozen = {n: p.detach().clone() for n, p in fc.adapt_root().named_parameters() if not p.requires_grad}
    cfg = TrainConfig(epochs=2, lr=3e-3, batch_size=16, seed=0, max_steps_per_epoch=5, loss=fc.default_loss)
    res = train(fc, tr, va, cfg)
    assert res.steps == 10 and res.val_losses[-1] < res.val_losses[0] or res.train_losses[-1] < res.train_losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in fc.adapt_root().named_parameters() if not p.requires_grad)
    w = va.subset(np.arange(4))
    before = fc.forecast(w, num_samples=3, seed=1).samples
    fc.save_adapter(tmp_path / "ad")
    again = load_forecaster(model, "tiny", adapter=tmp_path / "ad")
    # applied without peft (engine.forecasters.lora_inject), to the same tensors, with the same floats
    assert any(type(m).__name__ == "LoraLinear" for m in again.adapt_root().modules())
    assert {k: v.shape for k, v in again.trainable_state().items()} == {k: v.shape for k, v in fc.trainable_state().items()}
    assert np.array_equal(before, again.forecast(w, num_samples=3, seed=1).samples)
    plain = load_forecaster(model, "tiny").forecast(w, num_samples=3, seed=1).samples
    assert not np.array_equal(before, plain)  # the adapter changed something


def test_full_finetune_round_trip(wins: tuple, tmp_path: Path) -> None:
    tr, va = wins
    fc = load_forecaster("chronos2", "tiny")
    fc.prepare_finetune("full")
    train(fc, tr, va, TrainConfig(epochs=1, lr=1e-3, max_steps_per_epoch=3, loss="quantile"))
    fc.save_adapter(tmp_path / "full")
    w = va.subset(np.arange(2))
    again = load_forecaster("chronos2", "tiny", adapter=tmp_path / "full")
    assert np.array_equal(fc.forecast(w, 2, seed=0).samples, again.forecast(w, 2, seed=0).samples)


def test_adapter_for_another_model_is_refused(wins: tuple, tmp_path: Path) -> None:
    fc = load_forecaster("chronos2", "tiny")
    fc.prepare_finetune("lora", rank=2)
    fc.save_adapter(tmp_path / "c2")
    with pytest.raises(Exception, match="chronos2"):
        load_forecaster("toto", "tiny", adapter=tmp_path / "c2")
    with pytest.raises(AdapterError, match="not an adapter directory"):
        load_forecaster("toto", "tiny", adapter=tmp_path)


def test_unsupported_loss_is_a_clear_error(wins: tuple) -> None:
    fc = load_forecaster("kronos", "tiny")
    with pytest.raises(ValueError, match="not available for this model"):
        fc.batch_loss(wins[0].subset(np.arange(2)), "huber")


def test_fine_tuned_tiny_beats_naive_on_seasonal_series() -> None:
    """A period-16 sine with noise: persistence is poor, a trained model learns the cycle."""
    close = _series(900, seed=1)
    tr = windows_from_close(close, 0, 600, 128, 16, stride=2)
    va = windows_from_close(close, 600, 750, 128, 16, span="val", train_end=600)
    fc = load_forecaster("toto", "tiny")
    fc.prepare_finetune("lora", rank=8, seed=0)
    cfg = TrainConfig(epochs=2, lr=3e-3, batch_size=16, seed=0, mae_samples=8, mae_windows=64)
    train(fc, tr, va, cfg)
    m = validation_mae_pct(fc, va, cfg)
    print(f"seasonal: toto tiny val MAE% {m['val_mae_pct']:.3f} vs naive {m['val_naive_mae_pct']:.3f}")
    assert m["val_mae_pct"] < 0.6 * m["val_naive_mae_pct"]


def _params(fc: Any) -> list[tuple[str, bool, torch.Tensor]]:
    return [(n, p.requires_grad, p.detach().clone()) for n, p in fc.adapt_root().named_parameters()]


def _same(a: list[tuple[str, bool, torch.Tensor]], b: list[tuple[str, bool, torch.Tensor]]) -> bool:
    """The same parameter names and requires_grad flags, and every tensor bit for bit."""
    if [(n, g) for n, g, _ in a] != [(n, g) for n, g, _ in b]:
        return False
    return all(torch.equal(x, y) for (*_, x), (*_, y) in zip(a, b, strict=True))


@pytest.mark.parametrize("model", MODELS)
def test_lora_inject_is_bit_identical_to_peft(model: str, wins: tuple, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare_finetune's own LoRA (engine.forecasters.lora_inject) against peft's (its fallback, forced
    here), same seed: the same parameter names, flags and initial tensors, the same tensors and output
    after AdamW steps, without and with dropout; an adapter peft trained loads without peft and gives
    peft's output; a peft-wrapped model cannot be given back to the cache as a base, an injected one
    can. A target peft has another layer for (an Embedding) still goes through peft. The one test that
    imports peft."""
    from engine.forecasters import lora_inject

    batch = wins[0].subset(np.arange(8))

    def prepared(via_peft: bool, dropout: float, **kw: Any) -> Any:
        fc = load_forecaster(model, "tiny")
        with monkeypatch.context() as mp:
            if via_peft:
                mp.setattr(lora_inject, "lora_target_names", lambda root, targets: None)
            fc.prepare_finetune("lora", rank=4, seed=7, dropout=dropout, **kw)
        return fc

    def kinds(fc: Any) -> set[str]:
        return {type(m).__module__.split(".")[0] + "." + type(m).__name__ for m in fc.adapt_root().modules()
                if hasattr(m, "base_layer")}

    def steps(fc: Any) -> None:
        torch.manual_seed(11)  # the dropout masks (LoRA's and the model's own) are drawn alike
        opt = torch.optim.AdamW(fc.trainable_parameters(), lr=1e-2)
        fc.set_train_mode(True)
        for _ in range(3):
            opt.zero_grad()
            fc.batch_loss(batch, fc.default_loss).backward()
            opt.step()
        fc.set_train_mode(False)

    def out(fc: Any) -> torch.Tensor:
        with torch.no_grad():
            return fc.batch_loss(batch, fc.default_loss)

    trained = {}
    for dropout in (0.0, 0.25):
        p, o = prepared(True, dropout), prepared(False, dropout)
        assert kinds(p) == {"peft.Linear"} and kinds(o) == {"engine.LoraLinear"}
        assert p.lora == o.lora and list(p.adapt_root().state_dict()) == list(o.adapt_root().state_dict())
        init = _params(o)
        assert _same(_params(p), init)
        steps(p)
        steps(o)
        trained[dropout] = _params(o)
        assert _same(_params(p), trained[dropout]) and torch.equal(out(p), out(o))
        assert not _same(trained[dropout], init)  # the steps moved the LoRA tensors
    assert not _same(trained[0.0], trained[0.25])  # the dropout was live
    # an adapter peft trained: loaded without peft, the same tensors and output
    p.save_adapter(tmp_path / "peft")
    again = load_forecaster(model, "tiny", adapter=tmp_path / "peft")
    assert kinds(again) == {"engine.LoraLinear"} and torch.equal(out(again), out(p))
    assert p.trainable_state().keys() == again.trainable_state().keys()
    assert all(torch.equal(v, again.trainable_state()[k]) for k, v in p.trainable_state().items())
    # the warm cache's test (engine.forecasters.cache): a peft-wrapped model is never a base again,
    # an injected one is the base once unwrapped (test_model_cache checks it through the cache)
    assert p.use_adapter(None) is False and o.use_adapter(None) is True
    assert _same(_params(o), _params(load_forecaster(model, "tiny")))
    if model == "kronos":  # a target that is an Embedding: the whole LoRA is peft's, as it saved it
        f = prepared(False, 0.0, targets=("q_proj", "emb_s1"))
        assert kinds(f) == {"peft.Linear", "peft.Embedding"} and f._injected is None
        assert any("lora_embedding_A" in n for n, g, _ in _params(f) if g)
        steps(f)
        f.save_adapter(tmp_path / "emb")
        back = load_forecaster(model, "tiny", adapter=tmp_path / "emb")
        assert kinds(back) == {"peft.Linear", "peft.Embedding"} and torch.equal(out(back), out(f))


def test_lora_targets_that_match_nothing_are_refused_and_change_nothing() -> None:
    fc = load_forecaster("toto", "tiny")
    before = _params(fc)
    with pytest.raises(AdapterError, match=r"lora targets \['nope'\] match no module of toto"):
        fc.prepare_finetune("lora", rank=2, targets=("nope",))
    assert fc.finetune is None and fc.lora is None and _same(_params(fc), before)
