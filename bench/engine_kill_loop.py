"""SIGKILL an engine again and again while it takes spooled jobs, launches and records them.

    FORECAST_TEST_HOOKS=1 python bench/engine_kill_loop.py [--jobs 100] [--kills 200]

Prints how many jobs were lost, duplicated (two result records, or two workers started in one job
folder), and left without a final state or reason (all must be 0), and the final states: a job whose
engine was killed after recording it as running and before its worker started is queued again
(engine.launches), so all succeed unless one was caught at launch MAX_LAUNCHES times. The suite runs
the same loop at a small count (tests/test_engine_kill_loop.py).

Each engine is a forked child (a real Engine on a real Store, real worker subprocesses that outlive
it); the parent kills it after a random 0-`max_life_s` and starts the next, which recovers what the
previous one left. A last engine runs until every job is final.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.eventlog import read_events  # noqa: E402
from engine.intake import spool_submit  # noqa: E402
from engine.jobs import JobDir, JobSpec  # noqa: E402
from engine.state import FINAL_STATES  # noqa: E402

if TYPE_CHECKING:
    from engine.backends.base import Backend


@dataclass
class Outcome:
    jobs: int
    kills: int
    lost: list[str]
    duplicated_results: list[str]
    double_started: list[str]
    without_reason: list[str]
    states: dict[str, int]
    seconds: float

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated_results or self.double_started or self.without_reason)

    def line(self) -> str:
        return (f"jobs={self.jobs} kills={self.kills} lost={len(self.lost)} "
                f"duplicated_results={len(self.duplicated_results)} double_started={len(self.double_started)} "
                f"no_final_state_or_reason={len(self.without_reason)} states={self.states} "
                f"({self.seconds:.1f} s)")


def spool_jobs(ws: Path, n: int) -> list[str]:
    """n quick scripted jobs, each of whose results carries one run (so doubles are countable)."""
    ids = []
    for i in range(n):
        run = {"model": "toto", "symbol": "AAPL", "hyperparams": {"i": i}, "metrics": {"val_mae_pct": float(i)}}
        spec = JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 2, "sleep": 0.01 * (i % 4),
                                                                      "result": {"runs": [run]}}})
        spool_submit(ws, spec)
        ids.append(spec.id)
    return ids


def _engine_main(ws: Path, fsync: bool, until_done: list[str] | None, backend: Callable[[], Backend] | None,
                 cpu_slots: int, life_s: float) -> None:
    from engine.controller import Engine
    from engine.gpu import FakeGpuSource
    from store import Store

    async def main() -> None:
        store = Store.open(ws, fsync=fsync, hyperparams_dir=ws / "hp")
        eng = Engine(ws, store=store, cpu_slots=cpu_slots, poll_interval=0.01, heartbeat_s=0.2,
                     validate_symbols=False, gpu_source=FakeGpuSource(0),
                     backend=backend() if backend is not None else None)
        await eng.start()
        deadline = time.monotonic() + life_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if until_done is not None and all((j := eng.job(i)) is not None and j.finished for i in until_done):
                break
        await eng.stop()
        store.close()

    asyncio.run(main())


def fork_engine(ws: Path, fsync: bool = False, until_done: list[str] | None = None, *,
                backend: Callable[[], Backend] | None = None, cpu_slots: int = 4, life_s: float = 120.0) -> int:
    """A forked child running a real Engine on `ws` (`backend()` built in the child; default: the one
    from the environment) until the jobs `until_done` are final, it is killed, or `life_s` passed; its pid."""
    pid = os.fork()
    if pid == 0:  # child: never return into the caller
        code = 0
        try:
            _engine_main(ws, fsync, until_done, backend, cpu_slots, life_s)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            code = 3
        os._exit(code)
    return pid


def run_kill_loop(ws: Path, n_jobs: int, kills: int, *, seed: int = 0, max_life_s: float = 0.6,
                  fsync: bool = False) -> Outcome:
    from store import Store

    t0 = time.monotonic()
    rng = random.Random(seed)
    ws.mkdir(parents=True, exist_ok=True)
    ids = spool_jobs(ws, n_jobs)
    for _ in range(kills):
        pid = fork_engine(ws, fsync)
        time.sleep(rng.uniform(0.0, max_life_s))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    pid = fork_engine(ws, fsync, until_done=ids)
    _, status = os.waitpid(pid, 0)
    if os.WEXITSTATUS(status) != 0:
        raise RuntimeError(f"the last engine failed (status {status})")
    with Store.open(ws, readonly=True) as st:
        recs = {r["id"]: r for r in st.jobs()}
        runs = st.runs()
    per_job: dict[str, int] = {}
    for r in runs:
        per_job[r["job_id"]] = per_job.get(r["job_id"], 0) + 1
    lost = [i for i in ids if i not in recs]
    dup = [j for j, n in per_job.items() if n > 1]
    double = []
    for i in ids:  # every event of the job, rotated segments included (engine.eventlog)
        evs = read_events(JobDir.of(ws, i).events).events
        if sum(1 for e in evs if e.get("type") == "started") > 1:
            double.append(i)
    bad = [i for i, r in recs.items() if r.get("state") not in FINAL_STATES
           or (r["state"] != "succeeded" and not r.get("reason"))
           or (r["state"] == "succeeded" and per_job.get(i) != 1)]
    states: dict[str, int] = {}
    for r in recs.values():
        states[r["state"]] = states.get(r["state"], 0) + 1
    return Outcome(n_jobs, kills, lost, dup, double, bad, states, time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--max-life", type=float, default=0.6, help="longest an engine lives before its SIGKILL (s)")
    ap.add_argument("--fsync", action="store_true", help="fsync every store commit (slower; same result)")
    args = ap.parse_args()
    os.environ["FORECAST_TEST_HOOKS"] = "1"
    with tempfile.TemporaryDirectory(prefix="bench-killloop-", dir=os.environ.get("BENCH_DIR")) as tmp:
        out = run_kill_loop(Path(tmp) / "ws", args.jobs, args.kills, max_life_s=args.max_life, fsync=args.fsync)
    print(out.line())
    for name in ("lost", "duplicated_results", "double_started", "without_reason"):
        if getattr(out, name):
            print(f"  {name}: {getattr(out, name)[:5]}")
    return 0 if out.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
