"""The warm worker's model cache (engine.forecasters.cache) on real tiny models: bounded, LRU, shared base."""

from __future__ import annotations

from collections.abc import Iterator

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
