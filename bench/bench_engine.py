"""Engine benchmarks: per-job overhead beyond the worker's own start-up, and event throughput.

    python bench/bench_engine.py [--jobs 10] [--events 200000] [--poll 0.2] [--short 1 8 24] [--only short]

0. Short jobs (issue 17): N naive `validate` jobs (one symbol each) queued at once vs one job
   covering the same N symbols, through the workspace's engine service on 2 CPU slots, cold (one process per job, `--no-warm`) and warm
   (engine.backends.pool; the pool starts empty, so the N jobs pay for its first start-up), N = 1,
   8, 24; plus the per-job overhead beyond the task's own compute (wall of N single jobs minus the
   one covering job, divided by N, times the slots). Target: 24 warm jobs within 2x the one job.
0b. Thread caps (issue 17): four tiny chronos2 `train` jobs (3 epochs of 15 steps) on 2 CPU slots, each worker
   capped at its share of the cores (through the engine service, and in an in-process Engine) vs left at the
   libraries' defaults (one thread per core each; in-process, as a service always caps).
   Target: capped ≤ 0.5x uncapped.
0c. Scale in symbols (issue 17): `forecast-console baseline --all` over the 24 shipped CSVs and
   over 480 (20 renamed copies of each), each into a fresh workspace, then once more over the 480
   (re-recording every row). Target: 480 ≤ 20x the 24-symbol wall.

1. Worker start-up alone: `python -m engine.worker <dir>` run directly (test hook, zero steps),
   from spawn to exit.
2. The same jobs through the Engine, one at a time. Per job the engine's part is
     submit -> worker launched (spec written, queue, admission, Popen, pid.json)
   + worker's exit.json written -> job marked finished (poll latency, drain, finalize, store),
   everything in between being the worker's own time. The finish-side latency is bounded by the
   poll interval (the poller is one task, not a watcher per job), so the figures are reported
   for the console's default (0.2 s) and a short one, plus the engine's CPU cost per job.
3. Events through tail -> state -> store: a worker-shaped stream (loss/progress/log/heartbeat)
   appended in chunks, each chunk read with `read_events`, folded into JobState, published to a
   subscriber, and the job record written to a real TinyDB store, as the poller does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["FORECAST_TEST_HOOKS"] = "1"

from engine.controller import Engine  # noqa: E402
from engine.events import read_events  # noqa: E402
from engine.gpu import FakeGpuSource  # noqa: E402
from engine.jobs import JobSpec  # noqa: E402
from engine.jobtable import LiveJob  # noqa: E402
from engine.state import JobState  # noqa: E402
from store import Store  # noqa: E402


def quick_spec() -> JobSpec:
    return JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 0}})


def bench_worker_direct(n: int, tmp: Path) -> list[float]:
    out = []
    for i in range(n):
        d = tmp / "direct" / f"j{i}"
        d.mkdir(parents=True)
        quick_spec().write(d)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine.worker", str(d)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
    return out


async def bench_engine(n: int, tmp: Path, poll: float) -> dict[str, float]:
    ws = tmp / f"ws-{poll}"
    store = Store.open(ws)
    eng = Engine(ws, store=store, poll_interval=poll, validate_symbols=False, gpu_source=FakeGpuSource(0))
    await eng.start()
    pre, post, total, worker = [], [], [], []
    cpu0 = time.process_time()
    try:
        for _ in range(n):
            t_submit = time.time()
            st = eng.submit(quick_spec())
            while not st.finished:
                await asyncio.sleep(0.001)
            jdir = ws / "jobs" / st.id
            launched = json.loads((jdir / "pid.json").read_text())["launched_at"]
            exit_t = json.loads((jdir / "exit.json").read_text())["t"]
            assert st.state == "succeeded", st.reason
            assert st.finished_at is not None
            pre.append(launched - t_submit)
            post.append(st.finished_at - exit_t)
            total.append(st.finished_at - t_submit)
            worker.append(exit_t - launched)
    finally:
        cpu = time.process_time() - cpu0
        await eng.stop()
        store.close()
    return {"pre_ms": 1000 * statistics.median(pre), "post_ms": 1000 * statistics.median(post),
            "total_ms": 1000 * statistics.median(total), "worker_ms": 1000 * statistics.median(worker),
            "cpu_ms_per_job": 1000 * cpu / n, "ticks": eng.ticks}


def bench_events(n_events: int, tmp: Path, chunk: int = 5000, persist_interval: float = 1.0) -> dict[str, float]:
    ws = tmp / f"ws-events-{persist_interval}"
    store = Store.open(ws)
    eng = Engine(ws, store=store, validate_symbols=False, gpu_source=FakeGpuSource(0),
                 persist_interval=persist_interval)
    spec = quick_spec()
    jdir = ws / "jobs" / spec.id
    jdir.mkdir(parents=True)
    spec.write(jdir)
    job = LiveJob(spec=spec, state=JobState.from_spec(spec))
    eng.table.jobs[spec.id] = job
    path = jdir / "events.jsonl"
    lines = []
    t = time.time()
    for i in range(n_events):
        k = i % 4
        if k == 0:
            ev = {"job": spec.id, "t": t, "type": "loss", "step": i, "epoch": 0, "train": 1.0 / (i + 1), "val": None}
        elif k == 1:
            ev = {"job": spec.id, "t": t, "type": "progress", "done": i, "total": n_events, "eta_s": 1.0,
                  "stage": "train"}
        elif k == 2:
            ev = {"job": spec.id, "t": t, "type": "log", "level": "info", "msg": f"step {i}"}
        else:
            ev = {"job": spec.id, "t": t, "type": "heartbeat"}
        lines.append(json.dumps(ev, separators=(",", ":")) + "\n")

    async def run() -> tuple[float, int]:
        q = eng.subscribe()
        got = 0
        elapsed = 0.0
        with open(path, "a", encoding="utf-8") as fh:
            for start in range(0, n_events, chunk):
                fh.write("".join(lines[start:start + chunk]))
                fh.flush()
                t0 = time.perf_counter()
                c = read_events(path, job.offset)
                eng.table.ingest(job, c)
                await eng.persistence.flush()
                while not q.empty():
                    q.get_nowait()
                    got += 1
                elapsed += time.perf_counter() - t0
        return elapsed, got

    async def run_and_flush() -> tuple[float, int]:
        out = await run()
        t0 = time.perf_counter()
        await eng.persistence.flush(force=True)
        return out[0] + (time.perf_counter() - t0), out[1]

    elapsed, got = asyncio.run(run_and_flush())
    rec = store.get_job(spec.id)
    store.close()
    assert rec is not None and rec["events_offset"] == path.stat().st_size
    assert len(eng.curve(spec.id)) == n_events // 4 + (1 if n_events % 4 else 0)
    return {"events": n_events, "seconds": elapsed, "per_s": n_events / elapsed, "updates": got}


def _short_spec(symbols: list[str]) -> JobSpec:
    return JobSpec.create("validate", symbols, model="naive", params={"horizon": 16})


def _service(ws: Path, warm: bool) -> Any:
    """A fresh engine service for `ws` (as the CLI starts one), warm workers on or off; its client."""
    from engine.client import JobClient

    os.environ["FORECAST_WARM"] = "1" if warm else "0"  # the service inherits the starting client's env
    client = JobClient(ws, cpu_slots=2, poll_interval=0.05)
    client.start()
    return client


def _run_through(client: Any, specs: list[JobSpec]) -> tuple[float, list[dict[str, Any]]]:
    """Wall from submitting `specs` at once to the last one final; their records."""
    t0 = time.perf_counter()
    for sp in specs:
        client.submit(sp)
    recs = [client.wait(sp.id) for sp in specs]
    wall = time.perf_counter() - t0
    bad = [r.get("reason") for r in recs if r.get("state") != "succeeded"]
    assert not bad, bad
    return wall, recs


def bench_short(n: int, tmp: Path, warm: bool, symbols: list[str]) -> dict[str, float]:
    """Wall from submitting N one-symbol jobs at once to all finished; and for one N-symbol job; both
    through the workspace's engine service (the path every CLI command and the console take).

    Warm: the pool is warmed first by one job per slot (as a running engine service keeps it), so
    the figures are what a user sees once workers exist; cold: a new process per job."""
    client = _service(tmp / f"ws-short-{n}-{warm}", warm)
    out: dict[str, float] = {}
    try:
        seen: set[int] = set()
        if warm:
            seen |= {r["pid"] for r in _run_through(client, [_short_spec([s]) for s in symbols[:2]])[1]}
        out["many"], recs = _run_through(client, [_short_spec([s]) for s in symbols[:n]])
        out["workers"] = float(len({r["pid"] for r in recs} - seen))
        out["one"], _ = _run_through(client, [_short_spec(symbols[:n])])
    finally:
        client.stop()
    return out


def _train_specs(symbols: list[str]) -> list[JobSpec]:
    return [JobSpec.create("train", [s], model="chronos2", params={"preset": "tiny", "epochs": 3,
                                                                   "max_steps_per_epoch": 15}) for s in symbols[:4]]


def bench_train_service(tmp: Path, symbols: list[str]) -> float:
    """Four tiny chronos2 train jobs through the engine service (thread caps as shipped)."""
    client = _service(tmp / "ws-train-service", warm=True)
    try:
        return _run_through(client, _train_specs(symbols))[0]
    finally:
        client.stop()


async def bench_train_caps(tmp: Path, capped: bool, symbols: list[str]) -> float:
    """Wall of four tiny chronos2 train jobs on 2 slots in an in-process Engine, with or without the
    per-worker thread cap (the uncapped run is the libraries' defaults: a service cannot be told to
    drop its caps)."""
    from engine.backends.local import LocalBackend
    from engine.threads import ENV_THREADS, THREAD_ENV_VARS

    ws = tmp / f"ws-train-{capped}"
    store = Store.open(ws)
    eng = Engine(ws, store=store, backend=LocalBackend(), cpu_slots=2, poll_interval=0.05, validate_symbols=False,
                 gpu_source=FakeGpuSource(0))
    if not capped:
        capped_env = eng.worker_env

        def uncapped(placement: object) -> dict[str, str]:
            env = capped_env(placement)  # type: ignore[arg-type]
            for k in (ENV_THREADS, *THREAD_ENV_VARS):
                env.pop(k, None)
            return env

        eng.worker_env = uncapped  # type: ignore[method-assign]
    await eng.start()
    try:
        t0 = time.perf_counter()
        states = [eng.submit(sp) for sp in _train_specs(symbols)]
        while not all(st.finished for st in states):
            await asyncio.sleep(0.05)
        bad = [st.reason for st in states if st.state != "succeeded"]
        assert not bad, bad
        return time.perf_counter() - t0
    finally:
        await eng.stop(cancel_running=True)
        store.close()


def bench_baseline_scale(tmp: Path) -> dict[str, float]:
    import shutil

    from engine.client import JobClient

    shipped = sorted((ROOT / "trainingdata").glob("*.csv"))
    out: dict[str, float] = {}
    for label, copies in (("24", 1), ("480", 20)):
        data = tmp / f"data-{label}"
        data.mkdir()
        for k in range(copies):
            for f in shipped:
                shutil.copy(f, data / (f.name if copies == 1 else f"{f.stem}X{k}.csv"))
        ws = tmp / f"ws-scale-{label}"
        cmd = [sys.executable, "-m", "console.cli", "--workspace", str(ws), "--data", str(data), "baseline", "--all",
               "--json"]
        for run in ("", " again"):  # the first run includes starting the workspace's engine service
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
            out[label + run] = time.perf_counter() - t0
        JobClient(ws, ensure=False).stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--poll", type=float, nargs="+", default=[0.2, 0.02])
    ap.add_argument("--short", type=int, nargs="+", default=[1, 8, 24], help="N for the short-jobs comparison")
    ap.add_argument("--only", choices=("short", "train", "scale"), default=None,
                    help="run only the short-jobs comparison, the thread-cap train comparison or the symbol scale")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        from engine.data import list_symbols

        symbols = [i.symbol for i in list_symbols([ROOT / "trainingdata"])]
        os.environ.setdefault("FORECAST_DATA", str(ROOT / "trainingdata"))
        if args.only in (None, "scale"):
            r = bench_baseline_scale(tmp)
            print(f"baseline --all: 24 symbols {r['24']:.2f} s (again {r['24 again']:.2f} s), 480 symbols "
                  f"{r['480']:.2f} s (again {r['480 again']:.2f} s) = x{r['480'] / r['24']:.1f} for 20x the symbols "
                  "(target ≤ 20)", flush=True)
            if args.only == "scale":
                return
        if args.only in (None, "train"):
            for_env = {k: os.environ.pop(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
            uncapped = asyncio.run(bench_train_caps(tmp, False, symbols))
            capped = asyncio.run(bench_train_caps(tmp, True, symbols))
            service = bench_train_service(tmp, symbols)
            os.environ.update(for_env)
            print(f"4 tiny chronos2 train jobs (3 epochs) on 2 slots: through the engine service (threads capped) "
                  f"{service:.1f} s, in-process engine capped {capped:.1f} s vs library defaults {uncapped:.1f} s "
                  f"(service x{service / uncapped:.2f}; target ≤ 0.5)", flush=True)
            if args.only == "train":
                return
        for n in args.short:
            for warm in (False, True):
                r = bench_short(n, tmp, warm, symbols)
                per_job = max(0.0, r["many"] - r["one"]) / n * 2  # 2 slots
                print(f"{n:2d} short jobs queued at once, {'warm' if warm else 'cold'}: {r['many']:6.2f} s vs one "
                      f"job covering the same {n} symbols {r['one']:5.2f} s  (x{r['many'] / r['one']:.1f}; "
                      f"{r['workers']:.0f} new processes; overhead {1000 * per_job:.0f} ms/job)", flush=True)
        if args.only == "short":
            return
        direct = bench_worker_direct(args.jobs, tmp)
        print(f"worker start-up alone (spawn -> exit, {args.jobs} runs): median {1000 * statistics.median(direct):.1f} ms")
        for poll in args.poll:
            r = asyncio.run(bench_engine(args.jobs, tmp, poll))
            overhead = r["pre_ms"] + r["post_ms"]
            print(f"engine, poll {poll:g}s: submit->launched {r['pre_ms']:.1f} ms, exit->finished "
                  f"{r['post_ms']:.1f} ms => engine overhead {overhead:.1f} ms/job "
                  f"(worker itself {r['worker_ms']:.1f} ms; submit->finished {r['total_ms']:.1f} ms; "
                  f"engine CPU {r['cpu_ms_per_job']:.1f} ms/job incl. idle ticks)")
        for pi, label in ((1.0, "job record every 1 s (default)"), (0.0, "job record every chunk")):
            e = bench_events(args.events, tmp, persist_interval=pi)
            print(f"events tail->state->store, {label}: {e['events']} events in {e['seconds']:.2f} s = "
                  f"{e['per_s']:,.0f} events/s ({e['updates']} updates published)")


if __name__ == "__main__":
    main()
