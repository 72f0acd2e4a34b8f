"""Console benchmark: time to first frame, and key-to-repaint latency while 24 jobs stream events.

Usage:  python bench/bench_console.py [--seconds 5] [--rate 10] [--runs 10000] [--profile queue.prof]

Targets (issue 7, issue 16): first frame ≤ 1 s; key-to-repaint p95 ≤ 50 ms with 24 jobs streaming
and a store of 10k runs (`--runs`; the Runs screen is measured too: rows on screen after its key,
and cursor keys on its table while the jobs stream).
Target (issue 17): the console process uses ≤ 10 % of a core with 24 jobs × 20 events/s on the
Queue and the Live screen (measured with no key pressed, the in-process streamer's own CPU time
subtracted, so the figure is the app's event intake, table and chart updates, and repaints).

How: a tmp workspace over the shipped trainingdata/, the real store and Engine. 24 job records are
seeded (finished, so no worker processes compete for the CPU and the engine's poller leaves them
alone); a streamer then feeds the console's engine mirror the progress/loss/log lines the engine
service's socket would carry, at `rate` events per job per second, and the mirror decodes and folds
them as its socket reader does. Latency is
measured headless: a Key event is posted to the app as the terminal driver would post it, and
the latency is the time until the first frame the compositor produces after the key's effect
(cursor moved / job switched) — on the Queue screen and on the Live screen.

`--profile FILE` writes cProfile stats of the Queue-screen key phase (main thread) to FILE; read them
with `python -m pstats FILE`. The process exits once the numbers are printed even if the app's
shutdown stalls (it is a benchmark, not a test of shutdown).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_JOBS = 24
#: Wait after switching screens before measuring CPU: the switch (compose, first layout) is a one-off
#: cost, the figure is the steady cost of streaming.
SETTLE_S = 1.5


def _seed(ws: Path, hp: Path) -> list[str]:
    from engine.jobs import JobSpec
    from store import Store

    st = Store.open(ws, hyperparams_dir=hp)
    ids = []
    try:
        for i in range(N_JOBS):
            jid = f"20250101-1200{i:02d}-000-train-{i:08x}"
            spec = JobSpec(id=jid, kind="train", symbols=("SPY",), model="toto", created_at=1.7e9 + i)
            st.put_job({"id": jid, "kind": "train", "symbols": ["SPY"], "model": "toto", "state": "succeeded",
                        "priority": 0, "attempt": 1, "created_at": 1.7e9 + i, "spec": spec.to_dict()})
            ids.append(jid)
    finally:
        st.close()
    return ids


def _seed_runs(ws: Path, hp: Path, n: int) -> float:
    """`n` tracked runs in one ledger transaction (as many sweeps would leave); returns seconds taken."""
    from store import Store

    t0 = time.perf_counter()
    st = Store.open(ws, hyperparams_dir=hp)
    models, symbols = ("toto", "kronos", "chronos2"), ("SPY", "AAPL", "NVDA", "MSFT", "TSLA", "COIN")
    win = {"span": "val", "count": 12, "stride": 4, "rows_covered": 60}
    try:
        with st.transaction():
            for i in range(n):
                st.log_run(models[i % 3], symbols[i % 6], {"preset": "tiny", "lr": 1e-4 * (1 + i % 7), "horizon": 16},
                           {"val_mae_pct": 3.0 + (i * 7919 % 1000) / 250, "val_loss": 0.2 + (i % 50) / 100},
                           training_time=10.0 + i % 90, seed=i, job_id=f"20250101-120000-000-sweep-{i % 24:08x}",
                           extra={"horizon": 16, "preset": "tiny", "val_windows": win})
    finally:
        st.close()
    return time.perf_counter() - t0


async def _stream(app: object, ids: list[str], rate: float, stop: asyncio.Event) -> int:
    """Feed the console's engine mirror the lines its socket would carry (engine.service's updates),
    two symbols per job as a two-symbol train job streams them; building the lines is the streamer's
    CPU (subtracted), decoding and folding them (EngineMirror._apply, what its reader does) the console's."""
    from engine import channel

    mirror = app.services.engine  # type: ignore[attr-defined]
    step = 0
    sent = 0
    period = 1.0 / rate
    while not stop.is_set():
        step += 1
        c0 = time.process_time()
        lines = []
        for jid in ids:
            rec = mirror.job(jid).to_record()
            done = float(step % 1000)
            sym = "SPY" if done < 500 else "AAPL"
            loss = 1.0 / (1 + 0.01 * step)
            rec.update(progress_total=2.0, progress_done=done / 500, eta_s=1000.0 - step, last_train_loss=loss,
                       stage="training", symbol=sym, symbol_i=1 + int(done >= 500), symbol_n=2)
            for kind, data, job in (
                ("progress", {"done": done / 500, "total": 2.0, "stage": "training", "symbol": sym}, rec),
                ("loss", {"step": step % 500 + 1, "epoch": step // 100, "train": loss, "symbol": sym,
                          "run": f"run-{sym}"}, None),
                ("log", {"level": "info", "msg": f"step {step}"}, None),
            ):
                lines.append(channel.encode({"update": {"job_id": jid, "kind": kind, "data": data}, "job": job}))
                sent += 1
        STREAMER_CPU[0] += time.process_time() - c0
        for line in lines:
            mirror._apply(channel.decode(line))
        await asyncio.sleep(period)
    return sent


#: CPU seconds the streamer itself spent (it runs in the app's process; subtracted from its figure).
STREAMER_CPU = [0.0]


#: `--profile-idle PREFIX`: cProfile stats of each no-key CPU phase go to PREFIX.<screen>.prof.
PROFILE_IDLE: list[str | None] = [None]


async def _idle_cpu(screen: str, seconds: float) -> float:
    """Percent of one core the console process used over `seconds` with no key pressed, streamer excluded."""
    prof = cProfile.Profile() if PROFILE_IDLE[0] else None
    if prof is not None:
        prof.enable()
    c0, s0, t0 = time.process_time(), STREAMER_CPU[0], time.perf_counter()
    await asyncio.sleep(seconds)
    used = (time.process_time() - c0) - (STREAMER_CPU[0] - s0)
    if prof is not None:
        prof.disable()
        prof.dump_stats(f"{PROFILE_IDLE[0]}.{screen}.prof")
    return 100.0 * used / (time.perf_counter() - t0)


async def _latencies(app: object, keys: list[str], probe: Callable[[], object]) -> list[float]:
    """Post each key as the terminal driver would; latency = first frame painted after its effect."""
    from textual import events

    paints: list[float] = []
    orig = app._display  # type: ignore[attr-defined]

    def spy(screen: object, renderable: object) -> None:
        if renderable is not None:
            paints.append(time.perf_counter())
        orig(screen, renderable)

    app._display = spy  # type: ignore[attr-defined]
    out = []
    try:
        for k in keys:
            before = probe()
            t0 = time.perf_counter()
            app.post_message(events.Key(k, None))  # type: ignore[attr-defined]
            while probe() == before and time.perf_counter() - t0 < 5:
                await asyncio.sleep(0.0005)
            changed = time.perf_counter()
            while not any(p >= changed for p in paints) and time.perf_counter() - t0 < 5:
                await asyncio.sleep(0.0005)
            painted = next((p for p in paints if p >= changed), time.perf_counter())
            out.append((painted - t0) * 1000)
            paints.clear()
            await asyncio.sleep(0.03)
    finally:
        app._display = orig  # type: ignore[attr-defined]
    return out


async def _watch_cell(read: Callable[[], object], stop: asyncio.Event) -> list[float]:
    """Times (perf_counter) at which the displayed value returned by `read` changed."""
    changes: list[float] = []
    last = read()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        cur = read()
        if cur != last:
            changes.append(time.perf_counter())
            last = cur
    return changes


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main(seconds: float, rate: float, profile: str | None = None,
               printed: asyncio.Event | None = None, idle_s: float = 4.0, n_runs: int = 10_000) -> None:
    from console.app import ForecastConsoleApp
    from console.services import ConsoleServices
    from engine.gpu import FakeGpuSource

    tmp = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    ws, hp = tmp / "ws", tmp / "hp"
    os.environ.setdefault("FORECAST_DATA", str(Path(__file__).resolve().parent.parent / "trainingdata"))
    ids = _seed(ws, hp)
    seed_s = _seed_runs(ws, hp, n_runs) if n_runs else 0.0

    t0 = time.perf_counter()
    svc = ConsoleServices(ws, hyperparams_dir=hp, gpu_source=FakeGpuSource(2, 80.0))
    app = ForecastConsoleApp(svc, telemetry_interval=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        t_first = time.perf_counter() - t0
        stocks = app.screen
        while stocks.table.row_count == 0:
            await pilot.pause(0.01)
        t_rows = time.perf_counter() - t0
        await asyncio.wait_for(app.ready.wait(), 10)
        t_ready = time.perf_counter() - t0
        print(f"store: {N_JOBS} jobs, {n_runs} runs (seeded in {seed_s:.1f} s)")
        print(f"time to first frame:           {t_first * 1000:7.1f} ms  (target ≤ 1000)")
        print(f"time to stock rows on screen:  {t_rows * 1000:7.1f} ms")
        print(f"time to engine+store ready:    {t_ready * 1000:7.1f} ms")

        dispatch_ms: list[float] = []
        orig_dispatch = app.dispatch_updates

        def timed_dispatch(batch: object) -> None:
            t = time.perf_counter()
            orig_dispatch(batch)
            dispatch_ms.append((time.perf_counter() - t) * 1000)

        app.dispatch_updates = timed_dispatch  # type: ignore[method-assign]
        stop = asyncio.Event()
        streamer = asyncio.create_task(_stream(app, ids, rate, stop))
        await pilot.press("2")
        await pilot.pause(SETTLE_S)
        cpu_queue = await _idle_cpu("queue", idle_s)
        batches0 = app.update_batches
        n_keys = max(20, int(seconds * 10))
        table = app.screen.table
        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()
        # Liveness: how often the *displayed* progress of a job changes while keys are pressed.
        watch_stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_cell(lambda: str(table.get_cell(ids[-1], "progress")), watch_stop))
        tk0 = time.perf_counter()
        queue_lat = await _latencies(app, (["down"] * 10 + ["up"] * 10) * (n_keys // 20),
                                     lambda: table.cursor_row)
        tk1 = time.perf_counter()
        watch_stop.set()
        shown = await watcher
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        gaps = [b - a for a, b in zip([tk0, *shown], [*shown, tk1], strict=True)]
        app.open_live(ids[0])
        await asyncio.sleep(SETTLE_S)
        live = app.screen
        cpu_live = await _idle_cpu("live", idle_s)
        live_lat = await _latencies(app, (["n"] * 10 + ["N"] * 10) * (n_keys // 40 or 1), lambda: live.job_id)
        runs_lat: list[float] = []
        t_runs = None
        if n_runs:
            t8 = time.perf_counter()
            app.switch_mode("runs")
            while not (getattr(app.screen, "MODE", "") == "runs" and app.screen.is_mounted
                       and app.screen.query("#runs-table") and app.screen.table.row_count):
                await asyncio.sleep(0.005)
            t_runs = time.perf_counter() - t8
            await asyncio.sleep(SETTLE_S)
            rt = app.screen.table
            runs_lat = await _latencies(app, (["down"] * 10 + ["up"] * 10) * (n_keys // 20), lambda: rt.cursor_row)
        stop.set()
        sent = await streamer
        batches = app.update_batches - batches0
        chart = app.screen.query_one("LossChart")
        if t_runs is not None:
            print(f"runs screen: {n_runs} runs, first {app.screen.table.row_count} rows on screen "
                  f"{t_runs * 1000:.0f} ms after switching to it (target ≤ 1000)")
        for name, lat in (("queue screen", queue_lat), ("live screen", live_lat), ("runs screen", runs_lat)):
            if not lat:
                continue
            print(f"key→repaint {name:13s} n={len(lat):3d}  p50 {statistics.median(lat):6.1f} ms  "
                  f"p95 {_pct(lat, 95):6.1f} ms  max {max(lat):6.1f} ms  (target p95 ≤ 50)")
        ev_rate = 3 * rate
        for name, cpu in (("queue screen", cpu_queue), ("live screen", cpu_live)):
            print(f"console CPU {name:13s} {cpu:5.1f} % of a core with {N_JOBS} jobs × {ev_rate:g} events/s, "
                  f"no keys (target ≤ 10 %)")
        print(f"queue progress on screen while keys pressed: {len(shown) / (tk1 - tk0):.1f} changes/s, "
              f"longest gap {max(gaps) * 1000:.0f} ms over {tk1 - tk0:.1f} s")
        print(f"update batch handling: n={len(dispatch_ms)} p50 {statistics.median(dispatch_ms):.1f} ms "
              f"p95 {_pct(dispatch_ms, 95):.1f} ms")
        print(f"events streamed: {sent} from {N_JOBS} jobs at {rate:g}/s each·type; UI batches applied: {batches}; "
              f"chart redraws on live screen: {chart.draw_count}")
        if not batches:
            print("INVALID RUN: no update batch reached the screens (the streamed events went to a queue "
                  "nobody drained), so the latencies above were measured without load", file=sys.stderr)
        for w in app.workers:
            if w.name == "update-pump" and w.error is not None:
                import traceback

                print("WARNING: the app's update pump died; numbers above are not under load:", file=sys.stderr)
                traceback.print_exception(w.error, file=sys.stderr)
        sys.stdout.flush()
        if printed is not None:
            printed.set()
        await app.shutdown()


async def _run(seconds: float, rate: float, profile: str | None, n_runs: int = 10_000) -> None:
    """Run the bench; once the numbers are out, give the app 15 s to exit, then stop waiting."""
    printed = asyncio.Event()
    task = asyncio.create_task(main(seconds, rate, profile, printed, n_runs=n_runs))
    done_or_printed = asyncio.ensure_future(printed.wait())
    await asyncio.wait({task, done_or_printed}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        await asyncio.wait({task}, timeout=15)
    if not task.done():
        print("warning: the app did not exit within 15 s of the results; exiting anyway", file=sys.stderr)
        sys.stderr.flush()
        os._exit(0)
    done_or_printed.cancel()
    task.result()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="roughly how long to press keys")
    ap.add_argument("--rate", type=float, default=20 / 3,
                    help="update rounds per second (3 events per job each; default: 20 events/s per job)")
    ap.add_argument("--runs", type=int, default=10_000, help="tracked runs in the store (0: none, no Runs phase)")
    ap.add_argument("--profile", default=None, help="write cProfile stats of the Queue-screen key phase here")
    ap.add_argument("--profile-idle", default=None, metavar="PREFIX",
                    help="write cProfile stats of the no-key CPU phases to PREFIX.queue.prof and PREFIX.live.prof")
    a = ap.parse_args()
    PROFILE_IDLE[0] = a.profile_idle
    asyncio.run(_run(a.seconds, a.rate, a.profile, a.runs))
    sys.stdout.flush()
    os._exit(0)  # worker threads of a stalled shutdown must not keep the benchmark alive
