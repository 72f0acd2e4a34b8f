"""Deterministic synthetic daily bars for the 24 shipped symbols (`trainingdata/SYMBOL.csv`).

Why synthetic: the product ships with data that exercises every path (easy and hard symbols,
short and long histories, crypto calendars) without licensing market data. The files are
byte-identical for a given seed: each symbol draws from its own PCG64 stream seeded with
`(seed, crc32(symbol))`, prices are printed with 4 decimals and volumes as integers.

Each series is a log-price path built from:
  * GARCH(1,1) innovations with Student-t(5) shocks (volatility clustering, fat tails),
  * a Markov volatility regime (calm x0.6 / normal x1 / stressed x1.8, mean stay 120 bars),
  * Poisson jumps (earnings / news), and a per-symbol drift,
  * a `structure` that decides what a fitted model can learn beyond persistence:
      random_walk  nothing (persistence is near-optimal): SPY QQQ AMZN META TSLA ADSK NET ETHUSD
                   COIN LCID U UNIUSD
      trend        drift regimes of 120-300 bars (momentum): NVDA AMD CRWD BTCUSD
      mean_revert  range-bound regimes (200-400 bars) pulled back to a level (half-life ~11 bars)
                   alternating with 50-120 bar random-walk regimes: MSFT ADBE INTC COUR QUBT
      seasonal     a 21-bar (monthly) cycle in the log price and a day-of-week return pattern:
                   AAPL GOOG (GOOGL follows GOOG with a small mean-reverting spread)
Bars: open between the previous close and the close, high/low outside both by a
volatility-scaled margin (low <= min(open, close), max(open, close) <= high); volume > 0 and
rising with |return| and the volatility regime. Stocks trade on business days, crypto daily.

Difficulty: `vol` was calibrated so naive persistence MAE% at h=64 (MAE / mean|y| x 100 over all
stride-1 walk-forward windows) lands in the profile's tier: easy ~5, medium 8-15, hard 15-30,
extreme >= 30. `naive_mae_pct` recomputes it; `tests/test_synth.py` checks the tiers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.difficulty import EXTREME, THRESHOLDS, tier
from engine.symbols import ALL_SYMBOLS, CRYPTO_SYMBOLS, validate_symbol

DEFAULT_SEED = 20240601
HEADER = "timestamp,open,high,low,close,volume"


def _tier_ranges() -> dict[str, tuple[float, float]]:
    """[low, high) naive MAE% at h=64 per tier, read from engine.difficulty (the one source)."""
    out: dict[str, tuple[float, float]] = {}
    lo = 0.0
    for hi, name in THRESHOLDS:
        out[name] = (lo, hi)
        lo = hi
    out[EXTREME] = (lo, float("inf"))
    return out


#: Tier → [low, high) naive MAE% at h=64; derived, so it cannot drift from engine.difficulty.
TIERS: dict[str, tuple[float, float]] = _tier_ranges()


@dataclass(frozen=True)
class Profile:
    """How one symbol's synthetic history is made (see the module docstring)."""

    symbol: str
    rows: int
    start: str            # first bar (business days for stocks, every day for crypto)
    base_price: float     # first close
    vol: float            # unconditional daily log-return volatility before regimes/jumps
    structure: str        # random_walk | trend | mean_revert | seasonal
    tier: str             # intended naive-MAE% difficulty tier at h=64
    drift: float = 0.0003  # daily log drift
    jump_rate: float = 0.012  # jumps per bar
    base_volume: float = 1e7
    follows: str | None = None  # GOOGL shares GOOG's path

    @property
    def crypto(self) -> bool:
        return self.symbol in CRYPTO_SYMBOLS


P = Profile
PROFILES: dict[str, Profile] = {p.symbol: p for p in (
    P("AAPL", 1700, "2018-12-25", 38.0, 0.0105, "seasonal", "easy", 0.0008, base_volume=9e7),
    P("ADBE", 1650, "2019-03-05", 270.0, 0.0336, "mean_revert", "medium", 0.0003, base_volume=3e6),
    P("ADSK", 1600, "2019-05-14", 160.0, 0.0292, "random_walk", "medium", 0.0003, base_volume=2e6),
    P("AMD", 1700, "2018-12-25", 18.0, 0.0220, "trend", "medium", 0.0010, base_volume=6e7),
    P("AMZN", 1700, "2018-12-25", 75.0, 0.0284, "random_walk", "medium", 0.0005, base_volume=6e7),
    P("BTCUSD", 2479, "2018-09-17", 6500.0, 0.0180, "trend", "medium", 0.0012, base_volume=3e4),
    P("COIN", 1060, "2021-06-08", 300.0, 0.0691, "random_walk", "hard", -0.0002, base_volume=1e7),
    P("COUR", 800, "2022-06-07", 14.0, 0.0464, "mean_revert", "medium", -0.0003, base_volume=2e6),
    P("CRWD", 1500, "2019-10-01", 50.0, 0.0190, "trend", "medium", 0.0010, base_volume=5e6),
    P("ETHUSD", 2300, "2019-03-15", 135.0, 0.0300, "random_walk", "medium", 0.0010, base_volume=4e5),
    P("GOOG", 1700, "2018-12-25", 52.0, 0.0183, "seasonal", "medium", 0.0006, base_volume=3e7),
    P("GOOGL", 1700, "2018-12-25", 52.0, 0.0183, "seasonal", "medium", 0.0006, base_volume=3.5e7,
      follows="GOOG"),
    P("INTC", 1700, "2018-12-25", 46.0, 0.0319, "mean_revert", "medium", -0.0002, base_volume=3e7),
    P("LCID", 900, "2022-01-18", 38.0, 0.0420, "random_walk", "hard", -0.0020, base_volume=2e7),
    P("META", 1700, "2018-12-25", 135.0, 0.0230, "random_walk", "medium", 0.0006, base_volume=2e7),
    P("MSFT", 1700, "2018-12-25", 100.0, 0.0160, "mean_revert", "easy", 0.0002, base_volume=3e7),
    P("NET", 1500, "2019-10-01", 20.0, 0.0290, "random_walk", "medium", 0.0008, base_volume=5e6),
    P("NVDA", 1700, "2018-12-25", 33.0, 0.0220, "trend", "medium", 0.0015, base_volume=5e7),
    P("QQQ", 1750, "2018-10-16", 170.0, 0.0150, "random_walk", "easy", 0.0006, base_volume=4e7),
    P("QUBT", 420, "2023-11-21", 1.2, 0.0700, "mean_revert", "hard", 0.0010, base_volume=8e6),
    P("SPY", 1750, "2018-10-16", 280.0, 0.0105, "random_walk", "easy", 0.0004, base_volume=8e7),
    P("TSLA", 1700, "2018-12-25", 22.0, 0.0330, "random_walk", "medium", 0.0010, base_volume=1e8),
    P("U", 1150, "2021-02-02", 150.0, 0.0300, "random_walk", "medium", -0.0010, base_volume=8e6),
    P("UNIUSD", 1750, "2020-09-15", 3.5, 0.1200, "random_walk", "extreme", 0.0005, base_volume=2e6),
)}
del P

STRUCTURED: dict[str, tuple[str, ...]] = {
    s: tuple(p.symbol for p in PROFILES.values() if p.structure == s)
    for s in ("random_walk", "trend", "mean_revert", "seasonal")
}


def _rng(seed: int, symbol: str) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(symbol.encode())])


def _dates(p: Profile) -> pd.DatetimeIndex:
    if p.crypto:
        return pd.date_range(p.start, periods=p.rows, freq="D")
    return pd.bdate_range(p.start, periods=p.rows)


def _segments(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[tuple[int, int]]:
    out, t = [], 0
    while t < n:
        length = int(rng.integers(lo, hi + 1))
        out.append((t, min(n, t + length)))
        t += length
    return out


def _innovations(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance GARCH(1,1) shocks and the per-bar volatility multiplier (GARCH x regime)."""
    alpha, beta = 0.08, 0.90
    z = (rng.standard_t(5, size=n) / np.sqrt(5.0 / 3.0)).tolist()
    hs = [1.0] * n
    es = [0.0] * n
    for t in range(n):  # plain floats: a numpy scalar loop is ~10x slower
        if t:
            hs[t] = (1 - alpha - beta) + alpha * es[t - 1] ** 2 + beta * hs[t - 1]
        es[t] = hs[t] ** 0.5 * z[t]
    h, e = np.array(hs), np.array(es)
    # Markov volatility regime
    levels = np.array([0.6, 1.0, 1.8])
    state = np.empty(n, dtype=np.int64)
    s = 1
    switch = rng.random(n) < 1.0 / 120.0
    pick = rng.integers(1, 3, size=n)
    for t in range(n):
        if switch[t]:
            s = (s + pick[t]) % 3
        state[t] = s
    mult = levels[state]
    mult = mult / np.sqrt(np.mean(mult**2))
    sig = np.sqrt(h) * mult
    return e * mult, sig


def _log_path(p: Profile, rng: np.random.Generator, n: int, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Log close path (starting at 0) and per-bar volatility."""
    shocks, sig = _innovations(rng, n)
    r = p.vol * shocks + p.drift
    jumps = (rng.random(n) < p.jump_rate) * rng.normal(0.0, 3.0 * p.vol, size=n)
    r = r + jumps
    vol_t = p.vol * sig
    x = np.empty(n)
    if p.structure == "trend":
        drift = np.zeros(n)
        for a, b in _segments(rng, n, 120, 300):
            drift[a:b] = rng.choice([-1.0, 0.0, 1.0, 1.5]) * 0.15 * p.vol
        x = np.cumsum(r + drift)
    elif p.structure == "mean_revert":
        # x = level + u: u is an OU deviation (the daily shocks, half-life ~11 bars) inside range
        # regimes of 200-400 bars; between them 50-120 "free" bars where it compounds like a
        # random walk with the symbol's drift (a breakout) and is then absorbed into the level.
        # The level itself only walks slowly; jumps are over-reactions that revert with u.
        kappa = 0.06
        level_walk = np.cumsum(0.1 * vol_t * rng.standard_normal(n))
        noise = p.vol * shocks + jumps
        free_drift = p.drift * 385.0 / 85.0  # breakouts carry the long-run drift (~22% of bars)
        u = np.zeros(n)
        base = np.zeros(n)
        t0, on, shift = 0, True, 0.0
        while t0 < n:
            length = int(rng.integers(200, 401) if on else rng.integers(50, 121))
            for t in range(t0, min(n, t0 + length)):
                prev = u[t - 1] if t else 0.0
                u[t] = (1.0 - kappa) * prev + noise[t] if on else prev + noise[t] + free_drift
                base[t] = shift
            if not on and t0 < n:  # free regime ends: its drift-away becomes the new level
                shift += u[min(n, t0 + length) - 1]
                u[min(n, t0 + length) - 1 :] = 0.0
            t0, on = t0 + length, not on
        x = level_walk + base + u
    elif p.structure == "seasonal":
        dow = np.asarray(dates.dayofweek)
        week = np.array([-1.0, 0.5, 0.5, 0.5, -0.5, 0.0, 0.0]) * 0.25 * p.vol
        rows = np.arange(n)
        cycle = 1.0 * p.vol * np.sqrt(21.0) * np.sin(2 * np.pi * rows / 21.0 + rng.uniform(0, 2 * np.pi))
        x = np.cumsum(r + week[dow]) + cycle - cycle[0]
    else:
        x = np.cumsum(r)
    return x - x[0], vol_t


def generate(symbol: str, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """One symbol's bars as a DataFrame with columns timestamp, open, high, low, close, volume.

    Prices are already rounded to 4 decimals (and OHLC made consistent after rounding), volume to
    integers, so writing the frame is exact.
    """
    sym = validate_symbol(symbol)
    if sym not in PROFILES:
        raise KeyError(f"no synthetic profile for {sym!r}; known: {', '.join(PROFILES)}")
    p = PROFILES[sym]
    n = p.rows
    dates = _dates(p)
    if p.follows:
        lead = PROFILES[p.follows]
        x, vol_t = _log_path(lead, _rng(seed, lead.symbol), n, dates)
        rng = _rng(seed, sym)
        spread = np.zeros(n)
        eps = rng.normal(0.0, 0.002, size=n)
        for t in range(1, n):
            spread[t] = 0.9 * spread[t - 1] + eps[t]
        x = x + spread
    else:
        rng = _rng(seed, sym)
        x, vol_t = _log_path(p, rng, n, dates)

    close = p.base_price * np.exp(x)
    prev = np.concatenate(([close[0] * np.exp(-rng.normal(0, 0.3 * vol_t[0]))], close[:-1]))
    ret = np.log(close / prev)
    gap = 0.3 * ret + rng.normal(0.0, 0.25, size=n) * vol_t
    open_ = prev * np.exp(gap)
    top = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5, size=n)) * vol_t)
    bottom = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5, size=n)) * vol_t)

    noise = np.zeros(n)
    eps = rng.normal(0.0, 0.25, size=n)
    for t in range(1, n):
        noise[t] = 0.7 * noise[t - 1] + eps[t]
    shock = np.abs(ret) / np.maximum(vol_t, 1e-12)
    volume = p.base_volume * np.exp(0.35 * np.minimum(shock, 8.0) + 0.5 * np.log(vol_t / p.vol) + noise)

    o = np.round(open_, 4)
    c = np.round(close, 4)
    h = np.maximum(np.round(top, 4), np.maximum(o, c))
    lo = np.minimum(np.round(bottom, 4), np.minimum(o, c))
    if (lo <= 0).any():
        raise ValueError(f"{sym}: synthetic price fell to zero; raise base_price or lower vol")
    return pd.DataFrame({
        "timestamp": dates, "open": o, "high": h, "low": lo, "close": c,
        "volume": np.maximum(1, np.round(volume)).astype(np.int64),
    })


def to_csv_text(frame: pd.DataFrame) -> str:
    """Fixed formatting (ISO date, 4-decimal prices, integer volume, '\\n' line ends)."""
    lines = [HEADER]
    ts = frame["timestamp"].dt.strftime("%Y-%m-%d").tolist()
    for d, o, h, lo, c, v in zip(ts, frame["open"], frame["high"], frame["low"], frame["close"],
                                 frame["volume"], strict=True):
        lines.append(f"{d},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{int(v)}")
    return "\n".join(lines) + "\n"


def write_all(out_dir: Path, seed: int = DEFAULT_SEED, symbols: Iterable[str] | None = None) -> list[Path]:
    """Write `SYMBOL.csv` for each symbol (all 24 by default); each file is replaced atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sym in (symbols if symbols is not None else ALL_SYMBOLS):
        sym = validate_symbol(sym)
        text = to_csv_text(generate(sym, seed))
        path = out_dir / f"{sym}.csv"
        tmp = out_dir / f".{sym}.csv.tmp"
        tmp.write_text(text, encoding="utf-8", newline="\n")
        tmp.replace(path)
        written.append(path)
    return written


def naive_mae_pct(close: np.ndarray, horizon: int = 64, start: int = 1) -> float:
    """Persistence MAE% over every stride-1 window with origin in [start, n-horizon]:
    mean |close[o+k] - close[o-1]| / mean |close[o+k]| x 100 (the pooled definition of
    engine.metrics.mae_pct), so difficulty can be checked without the model code."""
    close = np.asarray(close, dtype=np.float64)
    origins = np.arange(max(1, start), len(close) - horizon + 1)
    if origins.size == 0:
        raise ValueError(f"need more than {horizon} rows, have {len(close)}")
    y = close[origins[:, None] + np.arange(horizon)[None, :]]
    last = close[origins - 1][:, None]
    return float(np.abs(y - last).mean() / np.abs(y).mean() * 100.0)


def tier_of(mae_pct: float) -> str:
    """The difficulty tier of a naive MAE% at h=64: `engine.difficulty.tier`, so the profiles'
    intended tiers are checked against the same thresholds the planner and baseline use."""
    return tier(mae_pct)
