"""The warm worker's model cache (engine.forecasters.cache) on real tiny models: bounded, LRU, shared base."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.forecasters import cache
from engine.forecasters.registry import load_forecaster

torch.set_num_threads(1)


@pytest.fixture
def active() -> Iterator[None]:
    yield
    cache.disable()


def test_loads_without_adapter_share_one_base_and_only_in_a_warm_worker(active: None) -> None:
    assert cache.active() is None
    assert load_forecaster("kronos", "tiny") is not load_forecaster("kronos", "tiny")  # no cache: fresh each time
    c = cache.enable(64)
    a = load_forecaster("kronos", "tiny")
    assert load_forecaster("kronos", "tiny") is a and (c.hits, c.misses) == (1, 1)
    assert c.bytes == cache.tensor_bytes(a) > 0


def test_eviction_keeps_the_bytes_under_the_bound_least_recent_first(active: None) -> None:
    kron = cache.tensor_bytes(load_forecaster("kronos", "tiny"))
    chron = cache.tensor_bytes(load_forecaster("chronos2", "tiny"))
    c = cache.enable((kron + chron - 1) / 2**20)  # room for either, not both
    load_forecaster("chronos2", "tiny")
    load_forecaster("kronos", "tiny")  # over the bound: chronos2 (least recent) goes
    assert c.evictions == 1 and c.bytes == kron <= c.max_bytes
    assert [k.split('"')[1] for k in c.keys()] == ["kronos"]
    load_forecaster("chronos2", "tiny")  # a miss again; now kronos goes
    assert c.misses == 3 and [k.split('"')[1] for k in c.keys()] == ["chronos2"]
    small = cache.enable((min(kron, chron) - 1) / 2**20)
    load_forecaster("kronos", "tiny")
    assert small.keys() == [] and small.bytes == 0  # bigger than the whole bound: used, never kept


def test_lora_adapters_swap_on_one_cached_base_each_job_gets_exactly_its_weights(active: None, tmp_path: Path) -> None:
    """Same adapter again: the same model, nothing reloaded, same forecast. Another adapter: the same
    base with that adapter's LoRA, forecasting what a fresh load of it does. No adapter: the base as
    built (no LoRA left, requires_grad as fresh), and the bound counts the LoRA tensors meanwhile."""
    import numpy as np

    from engine.forecasters.lora_inject import lora_module_names
    from engine.forecasters.realsize import write_random_adapter
    from engine.forecasters.training import windows_from_close

    a = write_random_adapter("toto", tmp_path / "a", seed=1)
    b = write_random_adapter("toto", tmp_path / "b", seed=2)
    close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300))
    w = windows_from_close(close, 200, 300, 64, 16, span="val", train_end=200).subset(np.arange(2))

    def fc(m: Any) -> np.ndarray:
        return m.forecast(w, num_samples=4, seed=0).samples

    fresh = {k: fc(load_forecaster("toto", "tiny", adapter=p)) for k, p in (("a", a), ("b", b), ("base", None))}
    base_grads = {n: p.requires_grad for n, p in load_forecaster("toto", "tiny").backbone.named_parameters()}
    assert not np.array_equal(fresh["a"], fresh["b"]) and not np.array_equal(fresh["a"], fresh["base"])
    c = cache.enable(256)
    m1 = load_forecaster("toto", "tiny", adapter=a)
    assert np.array_equal(fc(m1), fresh["a"]) and c.bytes == cache.tensor_bytes(m1)
    lora_a = m1.backbone.get_submodule(lora_module_names(m1.trainable_state())[0]).lora_A["default"]
    m2 = load_forecaster("toto", "tiny", adapter=a)  # the second job with the same adapter
    assert m2 is m1 and (c.hits, c.misses) == (1, 1)
    assert m2.backbone.get_submodule(lora_module_names(m2.trainable_state())[0]).lora_A["default"] is lora_a
    assert np.array_equal(fc(m2), fresh["a"])
    m3 = load_forecaster("toto", "tiny", adapter=b)  # another adapter: its own LoRA on the same base
    assert m3 is m1 and np.array_equal(fc(m3), fresh["b"])
    m4 = load_forecaster("toto", "tiny")  # no adapter: the base again
    assert m4 is m1 and m4.finetune is None and np.array_equal(fc(m4), fresh["base"])
    assert not [n for n, _ in m4.backbone.named_modules() if "lora_" in n]
    assert {n: p.requires_grad for n, p in m4.backbone.named_parameters()} == base_grads
    assert c.bytes == cache.tensor_bytes(m4) < cache.tensor_bytes(load_forecaster("toto", "tiny", adapter=a))


def test_an_adapter_that_rewrites_the_base_is_not_kept_and_the_bound_holds_with_lora(active: None,
                                                                                    tmp_path: Path) -> None:
    import json

    from engine.forecasters.lora import ADAPTER_META
    from engine.forecasters.realsize import write_random_adapter

    a = write_random_adapter("toto", tmp_path / "a", seed=1)
    full = load_forecaster("toto", "tiny")
    full.prepare_finetune("full")
    full.save_adapter(tmp_path / "full")
    assert json.loads((tmp_path / "full" / ADAPTER_META).read_text())["finetune"] == "full"
    base = cache.tensor_bytes(load_forecaster("toto", "tiny"))
    c = cache.enable(base * 1.5 / 2**20)
    m = load_forecaster("toto", "tiny", adapter=tmp_path / "full")  # rewrites every weight: this job's alone
    assert c.keys() == [] and m.finetune == "full"
    m2 = load_forecaster("toto", "tiny", adapter=a)  # a fresh base, with the LoRA on top
    assert m2 is not m and len(c.keys()) == 1 and c.bytes == cache.tensor_bytes(m2) <= c.max_bytes
    tight = cache.enable((base + 1) / 2**20)  # the base fits, base + LoRA does not: not kept once adapted
    load_forecaster("toto", "tiny", adapter=a)
    assert tight.keys() == [] and tight.bytes == 0


def test_a_cached_base_prepared_and_trained_with_lora_is_the_base_again_for_the_next_job(active: None) -> None:
    """LoRA injected by prepare_finetune (engine.forecasters.lora_inject) comes off like a loaded one:
    the next load without adapter gets the same instance with the base's weights and flags."""
    import numpy as np

    from engine.forecasters.training import windows_from_close

    close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 300))
    w = windows_from_close(close, 0, 200, 64, 16, stride=8).subset(np.arange(4))
    fresh = load_forecaster("toto", "tiny")
    base = {n: (p.requires_grad, p.detach().clone()) for n, p in fresh.backbone.named_parameters()}
    c = cache.enable(256)
    m = load_forecaster("toto", "tiny")
    m.prepare_finetune("lora", rank=2, seed=3)
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=1e-2)
    m.batch_loss(w, m.default_loss).backward()
    opt.step()
    assert any(p.abs().sum() > 0 for n, p in m.backbone.named_parameters() if "lora_B" in n)  # trained
    again = load_forecaster("toto", "tiny")
    assert again is m and again.finetune is None and c.keys() != []
    assert [n for n, _ in again.backbone.named_parameters()] == list(base)
    assert all(p.requires_grad == base[n][0] and torch.equal(p, base[n][1]) for n, p in again.backbone.named_parameters())
    assert np.array_equal(again.forecast(w, num_samples=2, seed=0).samples, fresh.forecast(w, num_samples=2, seed=0).samples)
