"""Store benchmark: what a write and a best() query cost (prints figures; not a test).

    python bench/bench_store.py [--runs 10000]

Measures, in a temporary workspace on the current disk:
  * log_run with fsync on an empty store and on a store already holding N runs (the whole file is
    rewritten on every write, so this grows with N — the reason per-step data is kept out);
  * best() over N runs: cold (first call after a write: one scan + sort) and warm (memoised);
  * best(model, symbol) cold/warm; opening the store; a read-only reader picking up a new write.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.symbols import PRIORITY_SYMBOLS  # noqa: E402
from store import Store  # noqa: E402
from store.tracker import env_key, git_commit, new_run_id, package_versions  # noqa: E402

MODELS = ("toto", "kronos", "chronos2")


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) milliseconds over `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def _synthetic_runs(n: int, rng: random.Random) -> list[dict]:
    """Records shaped exactly like log_run's (bulk-inserted so building 10k runs takes seconds)."""
    now = time.time()
    ekey = env_key(package_versions())
    commit = git_commit()
    out = []
    for i in range(n):
        model = rng.choice(MODELS)
        out.append({
            "run_id": new_run_id(model) + f"{i:05d}", "model": model, "symbol": rng.choice(PRIORITY_SYMBOLS),
            "hyperparams": {"lr": rng.choice([1e-4, 3e-4, 1e-3]), "lora_rank": rng.choice([8, 12, 16]),
                            "context": 512, "horizon": 64, "num_samples": 256, "loss": "huber"},
            "metrics": {"val_mae_pct": rng.uniform(2, 30), "test_mae_pct": rng.uniform(2, 30),
                        "val_crps": rng.uniform(0.1, 3), "val_mase": rng.uniform(0.5, 2)},
            "checkpoint": None, "training_time": rng.uniform(10, 900), "notes": "", "seed": i,
            "job_id": None, "git_commit": commit, "env": ekey, "created_at": now + i * 1e-3,
            "created": "2025-01-01T00:00:00.000+00:00", "extra": {},
        })
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    args = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=os.environ.get("BENCH_DIR")) as tmp:
        ws = Path(tmp) / "ws"
        s = Store.open(ws, hyperparams_dir=Path(tmp) / "hp")

        def log() -> object:
            return s.log_run("toto", "AAPL", {"lr": 1e-4, "lora_rank": 8}, {"val_mae_pct": rng.uniform(2, 9)},
                             seed=1, notes="bench")

        med, mx = _ms(log, 30)
        print(f"log_run (fsync) on an empty store:        median {med:7.2f} ms   max {mx:7.2f} ms")

        s._db.table("runs").insert_multiple(_synthetic_runs(args.runs, rng))  # bench-only bulk load
        size = s.workspace.store_file.stat().st_size
        print(f"store.json with {args.runs + 30} runs:            {size / 1e6:7.2f} MB")

        med, mx = _ms(log, 10)
        print(f"log_run (fsync) with {args.runs} runs:         median {med:7.2f} ms   max {mx:7.2f} ms")

        def cold_best() -> object:
            s._rmemo_src = None  # drop the indexes: measure the scan + sort
            return s.best("val_mae_pct")

        med, mx = _ms(cold_best, 20)
        print(f"best() over {args.runs} runs, cold (one scan): median  {med:7.2f} ms   max {mx:7.2f} ms")
        med, mx = _ms(lambda: s.best("val_mae_pct"), 200)
        print(f"best() over {args.runs} runs, warm (memo):      median {med:7.3f} ms   max {mx:7.3f} ms")

        def cold_best_ms() -> object:
            s._rmemo_src = None  # drop the indexes: measure the scan + sort
            return s.best("val_mae_pct", model="toto", symbol="SPY")

        med, mx = _ms(cold_best_ms, 20)
        print(f"best(model, symbol) cold:                 median {med:7.2f} ms   max {mx:7.2f} ms")
        med, mx = _ms(lambda: s.best("val_mae_pct", model="toto", symbol="SPY"), 200)
        print(f"best(model, symbol) warm:                 median {med:7.3f} ms   max {mx:7.3f} ms")

        after = []
        for _ in range(5):
            log()
            t0 = time.perf_counter()
            s.best("val_mae_pct")
            after.append((time.perf_counter() - t0) * 1000)
        print(f"best() right after a log_run (index kept): median {statistics.median(after):7.3f} ms")

        def cold_top() -> object:
            s._rmemo_src = None
            return s.top_k(10, "val_mae_pct")

        med, mx = _ms(cold_top, 10)
        print(f"top_k(10) over {args.runs} runs, cold (sort): median {med:7.2f} ms   max {mx:7.2f} ms")

        r = None

        def open_ro() -> object:
            nonlocal r
            r = Store.open(ws, readonly=True)
            return r.best("val_mae_pct")

        med, mx = _ms(open_ro, 5)
        print(f"open read-only + first best():            median {med:7.2f} ms")
        s.close()
        med, mx = _ms(lambda: Store.open(ws).close(), 5)
        print(f"open writer (lock + parse):               median {med:7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
