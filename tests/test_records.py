"""Typed records: one field name per metric, clear errors naming the record, window specs."""

from __future__ import annotations

import json

import pytest

from store.records import (
    ComparisonRow,
    Metrics,
    Pick,
    Promotion,
    RecordError,
    RegressionRow,
    WindowSpec,
    parse,
    parse_all,
)


def test_metrics_have_one_name_each_and_refuse_unknown_ones() -> None:
    m = parse(Metrics, {"mae_pct": 1.5, "dm_stat": -2.0, "dm_p_two_sided": 0.04, "dm_p_better": 0.02})
    assert m.get("mae_pct") == 1.5 and m.dm_p_better == 0.02
    with pytest.raises(RecordError, match=r"metrics is invalid: dm_p: Extra inputs"):
        parse(Metrics, {"dm_p": 0.1})
    with pytest.raises(RecordError, match="unknown metric 'improvement_pct'"):
        m.get("improvement_pct")
    assert parse(Metrics, {"crps": float("nan")}).crps is None  # undefined, stored as null
    assert json.loads(json.dumps(m.to_doc()))["dm_p_two_sided"] == 0.04


def test_errors_name_the_record_and_field() -> None:
    with pytest.raises(RecordError, match=r"pick toto/SPY h=16 in picks\[0\] is invalid: validation.mae_pct"):
        parse_all(Pick, [{"model": "toto", "symbol": "SPY", "horizon": 16, "config": {},
                          "validation": {"mae_pct": "bad"}}], "picks")
    with pytest.raises(RecordError, match="horizon"):
        parse(ComparisonRow, {"model": "toto", "symbol": "SPY", "horizon": 0})
    with pytest.raises(RecordError, match="naive config method"):
        parse(Pick, {"model": "naive", "symbol": "SPY", "horizon": 4, "config": {"method": "magic"}})
    with pytest.raises(RecordError, match="must be a list"):
        parse_all(RegressionRow, {"model": "toto"}, "regressions")
    with pytest.raises(RecordError, match="promotion"):
        parse(Promotion, {"action": "delete", "model": "toto", "symbol": "SPY", "path": "x", "at": 1, "at_iso": "x"})


def test_decision_identity_is_normalised() -> None:
    p = parse(Pick, {"model": "Toto", "symbol": "spy", "horizon": 64, "config": {"num_samples": 8}})
    assert p.key() == ("SPY", 64, "toto", "tiny") and p.label() == "toto/SPY h=64 (tiny)"


def test_window_spec_counts_rows_covered() -> None:
    w = WindowSpec.from_origins("test", [20, 10, 11, 12], 4)
    assert (w.count, w.stride, w.rows_covered, w.first_origin, w.last_origin) == (4, 1, 10, 10, 20)
    assert WindowSpec.from_origins("val", [0, 8, 16], 8).rows_covered == 24
    assert w.short() == "test 4w"
    assert WindowSpec.from_origins("val", [], 8).count == 0


def test_names_are_checked_with_the_project_validators() -> None:
    with pytest.raises(RecordError, match="unknown model 'gpt'"):
        parse(Pick, {"model": "gpt", "symbol": "SPY", "horizon": 4, "config": {}})
    with pytest.raises(RecordError, match="symbol"):
        parse(ComparisonRow, {"model": "toto", "symbol": "../x", "horizon": 4})
    assert parse(ComparisonRow, {"model": "ensemble_top2", "symbol": "SPY", "horizon": 4,
                                 "source": "ensemble"}).promotable() is False
