"""The shipped synthetic data: byte-identical regeneration, realistic bars, difficulty tiers, and
structure that a model can learn for the symbols documented as structured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import metrics, paths
from engine.data import load_symbol, split_spans, synth
from engine.symbols import ALL_SYMBOLS, CRYPTO_SYMBOLS

SHIPPED = paths.PROJECT_ROOT / "trainingdata"
H = 64


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {s: synth.generate(s) for s in ALL_SYMBOLS}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != paths.ENV_DATA}
    exe = Path(sys.executable).parent / "forecast-console"  # the installed entry point
    return subprocess.run([str(exe), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_profiles_cover_every_symbol() -> None:
    assert set(synth.PROFILES) == set(ALL_SYMBOLS)
    structured = {s for k, v in synth.STRUCTURED.items() if k != "random_walk" for s in v}
    assert len(structured) >= 8 and len(synth.STRUCTURED["random_walk"]) >= 8


def test_shipped_files_are_exactly_the_default_seed(frames: dict[str, pd.DataFrame]) -> None:
    for sym, frame in frames.items():
        assert (SHIPPED / f"{sym}.csv").read_bytes() == synth.to_csv_text(frame).encode(), sym


def test_cli_synth_is_byte_identical_and_refuses_to_clobber(tmp_path: Path) -> None:
    a = tmp_path / "a"
    r1 = _cli("data", "synth", "--out", str(a), cwd=tmp_path)
    assert r1.returncode == 0, r1.stderr
    assert "24 symbols, seed" in r1.stdout and f"written   {a / 'SPY.csv'}" in r1.stdout
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(f"{s}.csv" for s in ALL_SYMBOLS)
    for n in names:  # the shipped files came from an earlier run: same bytes across runs
        assert (a / n).read_bytes() == (SHIPPED / n).read_bytes(), n
    # another seed into a folder holding different data: refused, nothing touched
    before = {n: (a / n).read_bytes() for n in names}
    r2 = _cli("data", "synth", "--seed", "7", "--out", str(a), cwd=tmp_path)
    assert r2.returncode == 2 and "differ from seed 7" in r2.stderr and "nothing written" in r2.stderr
    assert {n: (a / n).read_bytes() for n in names} == before
    assert sorted(p.name for p in a.iterdir()) == names
    r3 = _cli("data", "synth", "--seed", "7", "--out", str(a), "--symbols", "SPY", "QQQ", "--force", cwd=tmp_path)
    assert r3.returncode == 0 and r3.stdout.count("replaced") == 2, r3.stderr
    assert (a / "SPY.csv").read_bytes() == synth.to_csv_text(synth.generate("SPY", seed=7)).encode()
    assert (a / "AAPL.csv").read_bytes() == before["AAPL.csv"]


def test_cli_check_good_and_bad(tmp_path: Path) -> None:
    bad = tmp_path / "BAD.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-02,10,11,9,10,1\n2024-01-03,10,9,11,10,1\n")
    r = _cli("data", "check", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert f"{bad}:3: inconsistent OHLC: high 9 is below low 11" in r.stderr
    assert bad.read_text().count("\n") == 3
    mixed = _cli("--data", str(SHIPPED), "data", "check", "SPY", "UNIUSD", "NOPE", cwd=tmp_path)
    assert mixed.returncode == 2 and "unknown symbol 'NOPE'" in mixed.stderr
    assert "ok  SPY" in mixed.stdout and "1750 rows  2018-10-16 .. 2025-06-30" in mixed.stdout
    assert "ok  UNIUSD" in mixed.stdout and "1 of 3 failed" in mixed.stderr


def test_calendar_rows_and_bars(frames: dict[str, pd.DataFrame]) -> None:
    rows = []
    for sym, f in frames.items():
        n = len(f)
        rows.append(n)
        assert 400 <= n <= 2500, sym
        gaps = f["timestamp"].diff().dropna().dt.days
        if sym in CRYPTO_SYMBOLS:
            assert (gaps == 1).all(), sym
        else:
            assert (f["timestamp"].dt.dayofweek < 5).all() and set(gaps) <= {1, 3}, sym
        o, h, lo, c, v = (f[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
        assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all() and (lo > 0).all(), sym
        assert (v > 0).all() and f["volume"].dtype == np.int64, sym
        r = np.abs(np.diff(np.log(c)))
        vol_rank = pd.Series(v[1:]).rank().corr(pd.Series(r).rank())
        assert vol_rank > 0.2, (sym, vol_rank)  # volume rises with |return|
    assert 1500 <= float(np.median(rows)) <= 1800
    for short in ("QUBT", "LCID", "COUR", "U", "COIN"):
        assert len(frames[short]) < 1200


def test_volatility_clusters_and_jumps(frames: dict[str, pd.DataFrame]) -> None:
    acfs, kurts = [], []
    for f in frames.values():
        r = np.diff(np.log(f["close"].to_numpy()))
        a = np.abs(r - r.mean())
        acfs.append(np.corrcoef(a[:-1], a[1:])[0, 1])
        kurts.append(pd.Series(r).kurt())
    assert min(acfs) > 0.0 and float(np.mean(acfs)) > 0.08  # |returns| cluster
    assert float(np.median(kurts)) > 1.0  # fat tails (normal = 0)


def test_tier_helpers_use_engine_difficulty_thresholds() -> None:
    from engine import difficulty

    assert tuple(synth.TIERS) == difficulty.TIERS
    assert {p.tier for p in synth.PROFILES.values()} <= set(difficulty.TIERS)
    for v in (0.5, 7.99, 8.0, 14.99, 15.0, 29.99, 30.0, 70.0):
        assert synth.tier_of(v) == difficulty.tier(v)
        lo, hi = synth.TIERS[synth.tier_of(v)]
        assert lo <= v < hi
    assert synth.tier_of(float("nan")) == "unknown"


def test_difficulty_tiers_at_h64(frames: dict[str, pd.DataFrame]) -> None:
    got = {}
    for sym, f in frames.items():
        c = f["close"].to_numpy()
        got[sym] = synth.naive_mae_pct(c, H)
        assert synth.tier_of(got[sym]) == synth.PROFILES[sym].tier, (sym, got[sym])
    for easy in ("SPY", "QQQ", "MSFT", "AAPL"):
        assert 3.5 <= got[easy] <= 7.0, (easy, got[easy])
    for hard in ("COIN", "LCID", "QUBT"):
        assert 15 <= got[hard] <= 30
    assert got["UNIUSD"] >= 30
    assert sum(8 <= v <= 15 for v in got.values()) >= 12
    # same number as the shared metric definition on the same windows
    c = frames["TSLA"]["close"].to_numpy()
    o = np.arange(1, len(c) - H + 1)
    y = c[o[:, None] + np.arange(H)]
    assert metrics.mae_pct(y, np.repeat(c[o - 1][:, None], H, axis=1)) == pytest.approx(got["TSLA"], rel=1e-12)


def _ratio(close: np.ndarray, predict, context: int = 126, step: int = 4) -> float:
    """MAE of a simple context-only predictor / MAE of persistence, over stride-`step` windows."""
    lc = np.log(close)
    e_model = e_naive = 0.0
    for o in range(context, len(close) - H + 1, step):
        y = close[o : o + H]
        e_naive += np.abs(y - close[o - 1]).mean()
        e_model += np.abs(y - np.exp(predict(lc[o - context : o]))).mean()
    return e_model / e_naive


_K = np.arange(H)


def _seasonal_fit(x: np.ndarray) -> np.ndarray:
    n = len(x)
    t = np.arange(n + H)
    design = np.column_stack([np.ones(n + H), t, np.sin(2 * np.pi * t / 21), np.cos(2 * np.pi * t / 21)])
    beta = np.linalg.lstsq(design[:n], x, rcond=None)[0]
    cyc = design[:, 2:] @ beta[2:]
    return x[-1] + cyc[n:] - cyc[n - 1]


def _revert(x: np.ndarray) -> np.ndarray:
    m = x[-60:].mean()
    return x[-1] + (1 - 0.96 ** (_K + 1)) * (m - x[-1])


def _momentum(x: np.ndarray) -> np.ndarray:
    return x[-1] + 0.5 * np.diff(x[-60:]).mean() * (_K + 1)


def test_structured_symbols_are_learnable_random_walks_are_not(frames: dict[str, pd.DataFrame]) -> None:
    close = {s: f["close"].to_numpy() for s, f in frames.items()}
    for sym in synth.STRUCTURED["seasonal"]:
        assert _ratio(close[sym], _seasonal_fit) < 0.85, sym
    for sym in synth.STRUCTURED["mean_revert"]:
        assert _ratio(close[sym], _revert) < 1.0, sym
    for sym in synth.STRUCTURED["trend"]:
        assert _ratio(close[sym], _momentum) < 0.97, sym
    rw = synth.STRUCTURED["random_walk"]
    assert all(_ratio(close[s], _seasonal_fit) > 0.98 for s in rw)  # no cycle to find
    assert sum(_ratio(close[s], _revert) > 1.0 for s in rw) >= len(rw) - 1  # reverting hurts a random walk


def test_googl_follows_goog_and_seeds_differ(frames: dict[str, pd.DataFrame]) -> None:
    r1 = np.diff(np.log(frames["GOOG"]["close"].to_numpy()))
    r2 = np.diff(np.log(frames["GOOGL"]["close"].to_numpy()))
    assert np.corrcoef(r1, r2)[0, 1] > 0.9
    other = synth.generate("SPY", seed=1)
    assert not np.array_equal(other["close"].to_numpy(), frames["SPY"]["close"].to_numpy())
    assert synth.to_csv_text(synth.generate("SPY", seed=1)) == synth.to_csv_text(other)
    with pytest.raises(KeyError, match="no synthetic profile"):
        synth.generate("ZZZZ")


def test_shipped_data_splits_at_long_horizons() -> None:
    for sym in ALL_SYMBOLS:
        s = load_symbol(sym, [SHIPPED])
        for horizon in (16, 32, 64):
            spans = split_spans(s.n_rows, horizon)
            assert spans.rows("test") >= horizon + 31 and spans.rows("val") >= horizon + 31
