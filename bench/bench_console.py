"""Console benchmark: first frame, key-to-repaint latency and CPU per screen while 24 jobs stream.

Usage:  python bench/bench_console.py [--before REF] [--repeat 1] [--seconds 3] [--runs 10000]
                                      [--profile-idle PREFIX] [--profile-keys PREFIX]

Targets (issues 7, 16, 17), with 24 jobs × 20 events/s streaming and a store of `--runs` runs:
- first frame ≤ 1 s: printed twice, from the app's construction (console code only) and from the
  launch of `forecast-console` in a fresh `python` process (interpreter, the CLI's parsing, imports,
  app: what a user waits for; the median of 3 launches with the bytecode cache written, as an
  installed package runs; the launch's CPU time is printed beside it: on a busy machine the wall
  figure moves with the load, its CPU time much less);
- key→repaint p95 ≤ 50 ms on the Stocks, Queue, Live and Runs screens;
- the console process uses ≤ 10 % of a core on every screen (Stocks, Queue, Live, GPU, Runs),
  measured with no key pressed, the in-process streamer's own CPU time subtracted;
- the Runs screen shows its first rows ≤ 1 s after its key (10k runs).

How: a tmp workspace over the shipped trainingdata/, the real store and engine service. 24 job
records are seeded (finished, so no worker processes compete for the CPU), and `--runs` tracked
runs; a streamer then feeds the console's engine mirror the progress/loss/log lines the service's
socket would carry, and the mirror decodes and folds them as its socket reader does. The app runs
with a terminal driver (`FrameDriver`, Textual's public Driver API) that keeps the time of every
frame the app writes, so a repaint is counted when its bytes reach the terminal (the escape codes
are built, as in a real terminal). Latency: a Key event is posted as the terminal driver would post
it; the latency is the time until the first frame written after the key's effect.

`--before REF` runs the same measurements on REF (exported with `git archive`) and on this tree,
alternately, in fresh processes, `--repeat` times each: side by side in one invocation.
`--profile-idle PREFIX` writes cProfile stats of each no-key phase to PREFIX.<screen>.prof,
`--profile-keys PREFIX` those of each key phase (and of the Runs switch) to PREFIX.<screen>-keys.prof.
Every key over `SLOW_KEY_MS` is printed by name with its latency and the garbage collections that ran
during it (gen/ms), so that a slow p95 can be traced to its keys; each screen's line ends with the full
(generation 2) collections of its whole phase (switch, settle, idle, keys).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if "--checkout" in sys.argv:  # measure another tree's console (the --before side)
    ROOT = Path(sys.argv[sys.argv.index("--checkout") + 1]).resolve()
sys.path.insert(0, str(ROOT))

from console_workload import N_JOBS, seed_jobs, seed_runs, stream  # noqa: E402  (this file's folder)
from textual.drivers.headless_driver import HeadlessDriver  # noqa: E402

#: Wait after switching screens before measuring: the switch (compose, first layout, first load) is a
#: one-off cost, the CPU figure is the steady cost of streaming.
SETTLE_S = 3.0
#: A screen not ready this long after its key is reported as such and skipped (instead of waiting forever).
SWITCH_LIMIT_S = 120.0
#: Screens measured for CPU, in the order visited.
CPU_SCREENS = ("stocks", "queue", "live", "gpu", "runs")

#: perf_counter() of each frame written to the terminal (FrameDriver.write).
FRAMES: list[float] = []
#: What the key phase's probe read when each frame was written (a frame shows the state it was built from).
FRAME_STATE: list[object] = []
PROBE: list[Callable[[], object] | None] = [None]
#: CPU seconds the streamer itself spent (it runs in the app's process; subtracted from its figure).
STREAMER_CPU = [0.0]
PROFILE_IDLE: list[str | None] = [None]
PROFILE_KEYS: list[str | None] = [None]
#: A key slower than this is printed by name (the key→repaint target is a p95 of 50 ms).
SLOW_KEY_MS = 50.0
#: (start, end, generation) of every garbage collection while the app runs (gc.callbacks).
GC_PAUSES: list[tuple[float, float, int]] = []
_gc_start = [0.0]


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_start[0] = time.perf_counter()
    else:
        GC_PAUSES.append((_gc_start[0], time.perf_counter(), int(info["generation"])))


class FrameDriver(HeadlessDriver):
    """A terminal that writes nowhere but keeps the time of each frame the app sends it."""

    @property
    def is_headless(self) -> bool:
        return False  # the app builds every frame's escape codes, as for a real terminal

    def write(self, data: str) -> None:
        if data:
            FRAMES.append(time.perf_counter())
            FRAME_STATE.append(PROBE[0]() if PROBE[0] is not None else None)


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


def _profiled(name: str) -> Any:
    """A cProfile.Profile enabled for a key phase when --profile-keys is given (else None)."""
    if not PROFILE_KEYS[0]:
        return None
    prof = cProfile.Profile()
    prof.enable()
    prof.dump_name = f"{PROFILE_KEYS[0]}.{name}-keys.prof"  # type: ignore[attr-defined]
    return prof


def _dump(prof: Any) -> None:
    if prof is not None:
        prof.disable()
        prof.dump_stats(prof.dump_name)


async def _latencies(app: Any, keys: list[str], probe: Callable[[], object]) -> list[tuple[str, float, str]]:
    """Post each key as the terminal driver would; latency = first frame written after its effect.
    Returns (key, ms, the collections of 2 ms or more that ran during it: "gc gen2 31ms …") per key."""
    from textual import events

    out = []
    PROBE[0] = probe
    for k in keys:
        before = probe()
        t0 = time.perf_counter()
        first = len(FRAMES)
        app.post_message(events.Key(k, None))

        def shown(first: int = first, before: object = before) -> float | None:
            """When the first frame built after the key's effect was written (the probe is read as
            each frame is written: a frame can go out before this loop wakes to see the change)."""
            return next((FRAMES[i] for i in range(first, len(FRAMES)) if FRAME_STATE[i] != before), None)

        while shown() is None and time.perf_counter() - t0 < 5:
            await asyncio.sleep(0.0005)
        painted = shown() or time.perf_counter()
        gcs = " ".join(f"gc gen{g} {(b - a) * 1000:.0f}ms" for a, b, g in GC_PAUSES
                       if b >= t0 and a <= painted and b - a >= 0.002)
        out.append((k, (painted - t0) * 1000, gcs))
        await asyncio.sleep(0.03)
    PROBE[0] = None
    return out


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _make_app(ws: Path, hp: Path) -> Any:
    from console.app import ForecastConsoleApp
    from console.services import ConsoleServices
    from engine.gpu import FakeGpuSource

    svc = ConsoleServices(ws, hyperparams_dir=hp, gpu_source=FakeGpuSource(2, 80.0))
    app = ForecastConsoleApp(svc, telemetry_interval=1.0)
    app.driver_class = FrameDriver
    return app


async def _switch(app: Any, mode: str, ready: Callable[[Any], bool]) -> float:
    """Switch to `mode`; seconds until `ready(screen)` holds and a frame showing it was written."""
    t0 = time.perf_counter()
    app.switch_mode(mode)
    while not (getattr(app.screen, "MODE", "") == mode and app.screen.is_mounted and ready(app.screen)):
        if time.perf_counter() - t0 > SWITCH_LIMIT_S:
            raise TimeoutError(f"the {mode} screen was not ready {SWITCH_LIMIT_S:.0f} s after its key")
        await asyncio.sleep(0.005)
    seen = time.perf_counter()
    while not (FRAMES and FRAMES[-1] >= seen) and time.perf_counter() - seen < 5:
        await asyncio.sleep(0.002)
    return time.perf_counter() - t0


async def measure(ws: Path, hp: Path, ids: list[str], seconds: float, rate: float, idle_s: float,
                  n_runs: int, extra: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {"cpu": {}, "lat": {}, "gc2": {}, **extra}
    FRAMES.clear()
    FRAME_STATE.clear()
    gc.callbacks.append(_gc_callback)
    t0 = time.perf_counter()
    app = _make_app(ws, hp)
    async with app.run_test(size=(120, 40), headless=False):
        while not FRAMES:
            await asyncio.sleep(0.001)
        res["first_frame_ms"] = (FRAMES[0] - t0) * 1000
        await asyncio.wait_for(app.ready.wait(), 20)
        res["ready_ms"] = (time.perf_counter() - t0) * 1000
        stop = asyncio.Event()
        streamer = asyncio.create_task(stream(app, ids, rate, stop, STREAMER_CPU))
        n_keys = max(20, int(seconds * 10))
        arrows = (["down"] * 10 + ["up"] * 10) * (n_keys // 20)
        for mode in CPU_SCREENS:
            if mode == "runs" and not n_runs:
                continue
            phase_t0, n_gc = time.perf_counter(), len(GC_PAUSES)
            if mode == "runs":
                prof = _profiled("runs-switch")
                try:
                    t_runs = await _switch(app, "runs", lambda s: bool(s.query("#runs-table")) and s.table.row_count > 0)
                except TimeoutError as exc:
                    res["runs_error"] = str(exc)
                    continue
                res["runs_rows_ms"] = t_runs * 1000
                res["runs_rows"] = app.screen.table.row_count
                t_all = await _switch(app, "runs", lambda s: not getattr(s, "filling", False))
                _dump(prof)
                res["runs_all_ms"], res["runs_all_rows"] = (t_runs + t_all) * 1000, app.screen.table.row_count
            elif mode == "live":
                app.open_live(ids[0])
            else:
                app.switch_mode(mode)
            await asyncio.sleep(SETTLE_S)
            res["cpu"][mode] = await _idle_cpu(mode, idle_s)
            scr = app.screen
            prof = _profiled(mode) if mode != "gpu" else None
            if mode in ("stocks", "queue", "runs"):
                table = scr.table
                res["lat"][mode] = await _latencies(app, arrows, lambda t=table: t.cursor_row)
            elif mode == "live":
                res["lat"][mode] = await _latencies(app, (["n"] * 10 + ["N"] * 10) * max(1, n_keys // 40),
                                                    lambda s=scr: s.job_id)
            _dump(prof)
            res["gc2"][mode] = [round((b - a) * 1000) for a, b, g in GC_PAUSES[n_gc:] if g == 2 and a >= phase_t0]
        stop.set()
        res["events"] = await streamer
        res["batches"] = getattr(app, "update_batches", None)
        # The app's stdout is captured while it runs: the result goes to the real one, and the process
        # ends here (a stalled shutdown must not hold the benchmark; the idle engine service ends itself).
        print("RESULT " + json.dumps(res), file=sys.__stdout__, flush=True)
        os._exit(0)
    return res


def _report(label: str, res: dict[str, Any], rate: float, n_runs: int) -> None:
    print(f"--- {label}")
    if "launch_ms" in res:
        cpu = f"; CPU {res['launch_cpu_ms']:.0f} ms, the figure load moves least" if "launch_cpu_ms" in res else ""
        print(f"first frame from process launch:   {res['launch_ms']:7.0f} ms  (target ≤ 1000{cpu})")
    print(f"first frame from app construction: {res['first_frame_ms']:7.0f} ms  (target ≤ 1000)")
    print(f"engine + store ready:              {res['ready_ms']:7.0f} ms")
    if "runs_rows_ms" in res:
        print(f"runs screen: {n_runs} runs, first {res['runs_rows']} rows on screen {res['runs_rows_ms']:.0f} ms "
              f"after its key (target ≤ 1000); all {res['runs_all_rows']} rows {res['runs_all_ms']:.0f} ms")
    if "runs_error" in res:
        print(f"runs screen: {n_runs} runs: {res['runs_error']} (target ≤ 1 s)")
    for mode in CPU_SCREENS:
        if mode not in res["cpu"]:
            continue
        per_key = res["lat"].get(mode) or []
        lat = [ms for _, ms, _ in per_key]
        keys = (f"key→repaint n={len(lat):3d} p50 {statistics.median(lat):6.1f} p95 {_pct(lat, 95):6.1f} "
                f"max {max(lat):6.1f} ms" if lat else "")
        full = res.get("gc2", {}).get(mode) or []
        gcs = f"   full gc: {len(full)}" + (f" (max {max(full)} ms)" if full else "")
        print(f"{mode:7s} CPU {res['cpu'][mode]:5.1f} % of a core (target ≤ 10)   {keys}{gcs}")
        slow = [f"#{i + 1} {k} {ms:.0f}ms{' (' + gcs + ')' if gcs else ''}"
                for i, (k, ms, gcs) in enumerate(per_key) if ms > SLOW_KEY_MS]
        if slow:
            print(f"        keys over {SLOW_KEY_MS:.0f} ms: {', '.join(slow)}")
    print(f"({N_JOBS} jobs × {3 * rate:g} events/s; {res['events']} events, {res['batches']} UI batches; "
          f"key→repaint target p95 ≤ 50 ms)")
    if not res["batches"]:
        print("INVALID RUN: no update batch reached the screens", file=sys.stderr)


async def _child(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    ws, hp = tmp / "ws", tmp / "hp"
    os.environ.setdefault("FORECAST_DATA", str(ROOT / "trainingdata"))
    ids = seed_jobs(ws, hp)
    seed_s = seed_runs(ws, hp, args.runs) if args.runs else 0.0
    launch, launch_cpu = _launch_ms(ws, hp)
    return await measure(ws, hp, ids, args.seconds, args.rate, args.idle, args.runs,
                         extra={"seed_s": seed_s, "launch_ms": launch, "launch_cpu_ms": launch_cpu})


#: The launch child: `forecast-console --workspace WS --hyperparams HP` as its entry script runs it,
#: with a terminal driver (chosen by Textual's public TEXTUAL_DRIVER setting) that says FIRST as the
#: first frame is written and ends the process.
LAUNCH_CHILD = """
import os, sys
from textual.drivers.headless_driver import HeadlessDriver

class FirstFrameDriver(HeadlessDriver):
    @property
    def is_headless(self):
        return False  # the frame's escape codes are built, as for a terminal

    def write(self, data):
        if data:  # the first frame, if it shows the Stocks screen (not an error printed by Textual)
            shown = getattr(self._app.screen, "MODE", type(self._app.screen).__name__)
            print("FIRST" if shown == "stocks" else f"NOT A FRAME of Stocks: {shown} {data[-300:]!r}",
                  file=sys.__stdout__, flush=True)
            os._exit(0)

from console.cli import main
sys.exit(main())
"""


def _launch_ms(ws: Path, hp: Path, repeat: int = 3) -> tuple[float, float]:
    """Wall from starting a fresh interpreter to the console's first frame on this workspace, through
    the real entry (`console.cli.main`: its argument parsing, then the app at 120×40): the median of
    `repeat` launches after one that only writes the tree's bytecode cache. The project's modules
    run from cached bytecode as an installed package's do (pip compiles them; a checkout writes
    __pycache__ on its first run): PYTHONDONTWRITEBYTECODE, often set in agents' and CI shells,
    would otherwise make every launch compile the console's modules from source."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(TEXTUAL_DRIVER="__main__:FirstFrameDriver", COLUMNS="120", LINES="40")

    def once() -> tuple[float, float]:
        """(wall ms to the first frame, CPU ms the child used: it ends as that frame is written)."""
        t0 = time.perf_counter()
        # -P: no current folder first on sys.path (the entry script has none either): from a checkout's
        # folder, `-c` would import that checkout's console whatever PYTHONPATH names (the --before side)
        p = subprocess.Popen([sys.executable, "-P", "-c", LAUNCH_CHILD, "--workspace", str(ws), "--hyperparams", str(hp)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert p.stdout is not None and p.stderr is not None
        said = next((line for line in p.stdout if line.startswith(("FIRST", "NOT A FRAME"))), "")
        if not said.startswith("FIRST"):  # a child that ended without a frame of its first screen
            raise RuntimeError(f"the console launch showed no first frame: {said[:400]} {p.stderr.read()[-2000:]}")
        t = (time.perf_counter() - t0) * 1000
        _, _, usage = os.wait4(p.pid, 0)
        p.returncode = 0  # reaped here (wait4 gives its CPU time)
        return t, (usage.ru_utime + usage.ru_stime) * 1000

    once()
    runs = [once() for _ in range(repeat)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="roughly how long to press keys per screen")
    ap.add_argument("--rate", type=float, default=20 / 3,
                    help="update rounds per second (3 events per job each; default: 20 events/s per job)")
    ap.add_argument("--idle", type=float, default=4.0, help="seconds of CPU measurement per screen")
    ap.add_argument("--runs", type=int, default=10_000, help="tracked runs in the store (0: none, no Runs phase)")
    ap.add_argument("--before", default=None, help="a git ref to measure beside this tree (e.g. main, 590cce3)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tree, alternating")
    ap.add_argument("--profile-idle", default=None, metavar="PREFIX",
                    help="write cProfile stats of the no-key phases to PREFIX.<screen>.prof")
    ap.add_argument("--profile-keys", default=None, metavar="PREFIX",
                    help="write cProfile stats of the key phases (and the Runs switch) to PREFIX.<screen>-keys.prof")
    ap.add_argument("--checkout", default=None, help=argparse.SUPPRESS)  # the tree a child measures
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a child's output
    a = ap.parse_args()
    PROFILE_IDLE[0], PROFILE_KEYS[0] = a.profile_idle, a.profile_keys
    if a.json:
        asyncio.run(_child(a))  # prints its RESULT line and ends the process
        return
    trees = [("this tree", ROOT)]
    tmp = Path(tempfile.mkdtemp(prefix="fc-bench-trees-"))
    if a.before:
        before = tmp / "before"
        before.mkdir()
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", a.before], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(before)], input=tar.stdout, check=True)
        trees.insert(0, (f"before ({a.before})", before))
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); "
          f"{N_JOBS} jobs, {a.runs} runs; `python bench/bench_console.py {' '.join(sys.argv[1:])}`")
    passthrough = ["--seconds", str(a.seconds), "--rate", str(a.rate), "--idle", str(a.idle), "--runs", str(a.runs)]
    for opt, val in (("--profile-idle", a.profile_idle), ("--profile-keys", a.profile_keys)):
        if val:
            passthrough += [opt, val]
    for r in range(a.repeat):
        for label, tree in trees:
            env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
                   "FORECAST_DATA": os.environ.get("FORECAST_DATA", str(ROOT / "trainingdata"))}
            p = subprocess.run([sys.executable, __file__, "--checkout", str(tree), "--json", *passthrough],
                               env=env, capture_output=True, text=True, timeout=300)
            line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"--- {label}: no result (rc {p.returncode})\n{p.stderr[-3000:]}")
                continue
            _report(f"{label}, run {r + 1} (load {os.getloadavg()[0]:.2f})", json.loads(line[7:]), a.rate, a.runs)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
