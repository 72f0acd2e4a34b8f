"""Store benchmark: what a write and a best-config query cost as the ledger grows (prints figures; not a test).

    python bench/bench_store.py [--sizes 1000,10000,100000] [--jobs 10000]
    python bench/bench_store.py --migration 100000 [--before OLD_CHECKOUT]

For each size N, in a temporary workspace on the current disk (BENCH_DIR to choose the disk):
  * log_run with fsync (one ledger transaction) on a store already holding N runs: a validate run's 22
    metrics and a train run's 11 (half the synthetic runs are each);
  * put_job with fsync on a store holding `--jobs` job records (replacing a running job's record,
    as the engine does every tick);
  * best(metric, model, symbol), best(metric), best(metric, model) and top_k(10) over N runs, each
    with its mixed-windows check (every synthetic run records its val/test windows, as real runs do);
  * the Runs screen's listing of every run (console.run_browser.load_runs on Store.listed_runs), beside
    the same rows made from whole run documents (Store.runs + job_summaries);
  * opening the store (writer, and a read-only reader with its first best());
  * engine start (recovery of every job record) with `--jobs` finished jobs.
`--migration N`: the first writer's open of a version-1 ledger of N runs (its one-off upgrade), by this
tree and by `--before`'s code on copies of the same file, and whether both made the same file.
Targets (issue 13): each write <= 10 ms at 100k runs; engine start with 10k finished jobs <= 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.symbols import PRIORITY_SYMBOLS  # noqa: E402
from store import Store  # noqa: E402
from store.ledger_file import LEDGER_FILE  # noqa: E402
from store.tracker import env_key, git_commit, new_run_id, package_versions, run_window_keys  # noqa: E402

MODELS = ("toto", "kronos", "chronos2")


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, max) milliseconds over `repeat` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


#: Every synthetic run records the windows its val_/test_ metrics were computed on, as real runs do
#: (the same windows for all: best() ranks them together; its mixed-windows check reads the groups).
_WINDOWS = {span: {"span": span, "count": 8, "stride": 64, "rows_covered": 576,
                   "first_origin": 1190, "last_origin": 1638, "span_rows": 576} for span in ("val", "test")}
#: The metrics store.records.Metrics defines, as validate records them per span (val_*, test_*).
_SCORES = ("mae", "mae_pct", "return_mae", "rmse", "mase", "crps", "coverage80", "dm_stat", "dm_p_two_sided",
           "dm_p_better", "latency_per_forecast_s")
#: What a train run records (engine/tasks/train.py).
_TRAIN = ("val_loss", "train_loss", "best_epoch", "epochs_done", "steps", "steps_per_s", "stopped_early",
          "val_mae_pct", "val_naive_mae_pct", "val_mae", "val_windows")


def _metrics(kind: str, rng: random.Random) -> dict[str, float]:
    """A validate run's 22 metrics or a train run's 11, with random values."""
    names = [f"{span}_{m}" for span in ("val", "test") for m in _SCORES] if kind == "validate" else list(_TRAIN)
    return {n: rng.uniform(0.5, 30) for n in names}


def _synthetic_run(i: int, rng: random.Random, now: float, ekey: str, commit: str | None) -> dict:
    """A record shaped exactly like log_run's, half of them validate runs, half train runs."""
    model = rng.choice(MODELS)
    kind = "validate" if i % 2 else "train"
    return {
        "run_id": new_run_id(model) + f"{i:06d}", "model": model, "symbol": rng.choice(PRIORITY_SYMBOLS),
        "hyperparams": {"lr": rng.choice([1e-4, 3e-4, 1e-3]), "lora_rank": rng.choice([8, 12, 16]),
                        "context": 512, "horizon": 64, "num_samples": 256, "loss": "huber", "preset": "tiny"},
        "metrics": _metrics(kind, rng),
        "checkpoint": None, "training_time": rng.uniform(10, 900), "notes": "", "seed": i,
        "job_id": f"20250101-000000-000-baseline-{i % 10_000:08x}", "git_commit": commit, "env": ekey,
        "created_at": now + i * 1e-3, "created": "2025-01-01T00:00:00.000+00:00",
        "extra": {"horizon": 64, "preset": "tiny", **{f"{span}_windows": _WINDOWS[span] for span in _WINDOWS}},
    }


def _job_record(i: int, state: str, now: float) -> dict:
    """A finished job's record shaped like the engine's (JobState.to_record() + spec + bookkeeping)."""
    jid = f"20250101-000000-000-baseline-{i:08x}"
    spec = {"id": jid, "kind": "baseline", "symbols": ["SPY"], "model": None, "params": {"horizon": 16},
            "priority": 0, "resources": {"gpus": 0.0, "vram_gb": 0.0, "cpus": 1}, "created_at": now + i,
            "attempt": 1, "parent": None}
    return {"id": jid, "kind": "baseline", "symbols": ["SPY"], "model": None, "state": state, "priority": 0,
            "attempt": 1, "progress_done": 4, "progress_total": 4, "eta_s": None, "device": "cpu", "pid": 1000 + i,
            "reason": None, "created_at": now + i, "started_at": now + i + 1, "finished_at": now + i + 2,
            "last_train_loss": None, "last_val_loss": None, "result_summary": "4 baselines", "stage": None,
            "warning": None, "last_heartbeat": now + i + 2, "exit_code": 0, "stderr_tail": None,
            "vram_gb": None, "parent": None, "metrics": {}, "spec": spec, "events_offset": 1234,
            "job_dir": f"/nonexistent/jobs/{jid}", "backend": "local"}


def _engine_start_s(ws: Path, hp: Path) -> tuple[float, int]:
    from engine.backends.local import LocalBackend
    from engine.controller import Engine
    from engine.gpu import FakeGpuSource

    async def run() -> tuple[float, int]:
        st = Store.open(ws, hyperparams_dir=hp)
        eng = Engine(ws, store=st, backend=LocalBackend(), gpu_source=FakeGpuSource(0, 0.0), validate_symbols=False)
        t0 = time.perf_counter()
        await eng.start()
        took = time.perf_counter() - t0
        n = len(eng.jobs())
        await eng.stop()
        st.close()
        return took, n

    return asyncio.run(run())


def _bulk_load(s: Store, n_runs: int, n_jobs: int, rng: random.Random, now: float) -> float:
    """N synthetic runs and job records in one transaction (bench only); the seconds it took."""
    ekey, commit = env_key(package_versions()), git_commit()
    t0 = time.perf_counter()
    with s.transaction():
        s.log_run("toto", "SPY", {}, {"val_mae_pct": 50.0})  # registers the env key
        for i in range(n_runs):
            rec = _synthetic_run(i, rng, now, ekey, commit)
            s._ledger.add_run(rec, run_window_keys(rec))
        s._ledger.put_jobs(_job_record(i, rng.choice(["succeeded", "failed"]), now) for i in range(n_jobs))
    return time.perf_counter() - t0


#: A ledger as version 1 wrote it (store/ledger_file.py migrates it): six metric indexes, no groups table,
#: no listed cells. tests/test_store_ledger.py makes its version-1 files with it too.
VERSION_1_SQL = """
    DROP TABLE metric_groups;
    ALTER TABLE runs DROP COLUMN listed;
    CREATE INDEX metrics_all ON metrics(name, value, created_at);
    CREATE INDEX metrics_model ON metrics(name, model, value, created_at);
    CREATE INDEX metrics_symbol ON metrics(name, symbol, value, created_at);
    CREATE INDEX metrics_windows ON metrics(name, symbol, windows) WHERE windows IS NOT NULL;
    CREATE INDEX metrics_windows_model ON metrics(name, model, symbol, windows) WHERE windows IS NOT NULL;
    UPDATE meta SET value = '1' WHERE key = 'schema_version';"""


def as_version_1(path: Path) -> None:
    """Turn a (closed) ledger file into what version 1 wrote."""
    con = sqlite3.connect(path)
    con.executescript(VERSION_1_SQL)
    con.close()


#: Run in a fresh interpreter of the tree under test: the first writer's open of a version-1 ledger.
_MIGRATE = ("import sys, time; from store.ledger import Ledger; t0 = time.perf_counter(); "
            "Ledger.open(sys.argv[1]).close(); print(f'{time.perf_counter() - t0:.2f}')")


def bench_migration(n_runs: int, before: Path | None, rng: random.Random, repeat: int = 1) -> None:
    """The v1 -> v2 migration of one version-1 ledger of `n_runs` runs, copied afresh for each tree and
    round and migrated by that tree's code (`before`: an older checkout, side by side, in turn)."""
    with tempfile.TemporaryDirectory(prefix="bench-migrate-", dir=os.environ.get("BENCH_DIR")) as tmp:
        ws = Path(tmp) / "ws"
        with Store.open(ws, hyperparams_dir=Path(tmp) / "hp") as s:
            load_s = _bulk_load(s, n_runs, 0, rng, time.time())
        as_version_1(ws / LEDGER_FILE)
        size = (ws / LEDGER_FILE).stat().st_size
        print(f"\n== migration of a version-1 ledger: {n_runs} runs, {size / 1e6:.0f} MB (bulk load {load_s:.1f} s)")
        here = Path(__file__).resolve().parent.parent
        results = {}
        for round_i, (name, tree) in enumerate([("before", before), ("this tree", here)] * repeat):
            if tree is None:
                continue
            copy = Path(tmp) / f"{name.replace(' ', '-')}-{round_i}" / LEDGER_FILE
            copy.parent.mkdir()
            shutil.copyfile(ws / LEDGER_FILE, copy)
            out = subprocess.run([sys.executable, "-c", _MIGRATE, str(copy)], cwd=tree, capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
            con = sqlite3.connect(copy)
            results[name] = (con.execute("SELECT seq, listed FROM runs ORDER BY seq").fetchall(),
                             con.execute("SELECT * FROM metric_groups ORDER BY 1, 2, 3, 4").fetchall())
            con.close()
            shutil.rmtree(copy.parent)
            print(f"{'first writer open (migrates), ' + name:<40} {out.stdout.strip():>8} s")
        if len(results) == 2:
            same = results["before"] == results["this tree"]
            print(f"{'both migrated files hold the same cells and groups':<40} {same}")


def bench_size(n_runs: int, n_jobs: int, rng: random.Random) -> None:
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=os.environ.get("BENCH_DIR")) as tmp:
        ws, hp = Path(tmp) / "ws", Path(tmp) / "hp"
        s = Store.open(ws, hyperparams_dir=hp)
        load_s = _bulk_load(s, n_runs, n_jobs, rng, now)
        size = sum(p.stat().st_size for p in ws.glob("ledger.db*"))
        print(f"\n== {n_runs} runs, {n_jobs} jobs (bulk load {load_s:.1f} s; ledger files {size / 1e6:.1f} MB)")

        def logger(kind: str) -> Callable[[], object]:
            return lambda: s.log_run("toto", "AAPL", {"lr": 1e-4, "lora_rank": 8}, _metrics(kind, rng),
                                     seed=1, notes="bench", extra={f"{sp}_windows": _WINDOWS[sp] for sp in _WINDOWS})

        running = _job_record(n_jobs + 1, "running", now)

        def put() -> None:
            running["progress_done"] += 1
            s.put_job(running)

        for name, fn, rep in (("log_run (fsync, validate: 22 mets)", logger("validate"), 30),
                              ("log_run (fsync, train: 11 metrics)", logger("train"), 30),
                              ("put_job (fsync)", put, 30)):
            med, mx = _ms(fn, rep)
            print(f"{name:<34} median {med:8.2f} ms   max {mx:8.2f} ms")
        for name, fn in (("best(val_mae_pct, toto, SPY)", lambda: s.best("val_mae_pct", "toto", "SPY")),
                         ("best(val_mae_pct)", lambda: s.best("val_mae_pct")),
                         ("best(test_mae_pct, kronos)", lambda: s.best("test_mae_pct", model="kronos")),
                         ("top_k(10, val_mae_pct, symbol=SPY)", lambda: s.top_k(10, symbol="SPY")),
                         ("top_k(10, val_mae_pct, model=toto)", lambda: s.top_k(10, model="toto"))):
            med, mx = _ms(fn, 50)
            print(f"{name:<34} median {med:8.3f} ms   max {mx:8.3f} ms")

        try:  # absent from a checkout before Store.listed_runs (run side by side with one)
            from console.run_browser import load_runs, rows_of
            from store.run_listing import listed_run
        except ImportError:
            load_runs = None  # type: ignore[assignment]
        with Store.open(ws, readonly=True) as ro:
            def old_listing() -> object:  # every run document decoded whole, then cut to a row
                docs = ro.runs()
                jobs = ro.job_summaries(d["job_id"] for d in docs if d.get("job_id"))
                return rows_of([listed_run(d, jobs.get(d["job_id"] or "")) for d in docs], ro.picks(), ro.promotions())

            rep = 3 if n_runs <= 10_000 else 1
            for name, fn in () if load_runs is None else (("Runs listing, whole documents", old_listing), ("Runs listing, listed_runs", lambda: load_runs(ro))):
                med, _ = _ms(fn, rep)
                print(f"{name:<34} median {med:8.0f} ms   ({rep}x, {n_runs + 1} rows)")

        def open_ro() -> object:
            with Store.open(ws, readonly=True) as r:
                return r.best("val_mae_pct", "toto", "SPY")

        med, _ = _ms(open_ro, 5)
        print(f"{'open read-only + first best()':<34} median {med:8.2f} ms")
        s.close()
        med, _ = _ms(lambda: Store.open(ws, hyperparams_dir=hp).close(), 5)
        print(f"{'open writer':<34} median {med:8.2f} ms")
        took, n = _engine_start_s(ws, hp)
        print(f"{'engine start':<34} {took:8.3f} s   ({n} jobs known to the engine)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="comma-separated run counts")
    ap.add_argument("--jobs", type=int, default=10_000, help="finished job records in the store")
    ap.add_argument("--migration", type=int, metavar="N", default=None,
                    help="only time the v1 -> v2 ledger migration of N runs")
    ap.add_argument("--before", type=Path, default=None,
                    help="with --migration: an older checkout whose code migrates a copy of the same file")
    ap.add_argument("--repeat", type=int, default=1, help="with --migration: rounds (each tree in turn)")
    args = ap.parse_args()
    rng = random.Random(0)
    if args.migration is not None:
        bench_migration(args.migration, args.before, rng, args.repeat)
        return 0
    for n in (int(x) for x in args.sizes.split(",")):
        bench_size(n, args.jobs, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
