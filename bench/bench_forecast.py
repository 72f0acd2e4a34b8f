"""`forecast` benchmark: wall time of `forecast-console forecast --stocks SPY --model toto --json` from a
promoted tiny toto decision (adapter included), with the workspace deleted (prints figures; not a test).

    python bench/bench_forecast.py [--before REF] [--repeat 3] [--horizon 16]

Setup (once, in a temporary folder; BENCH_DIR to choose it): the shipped trainingdata/SPY.csv, a real
toto tiny LoRA adapter (random LoRA matrices, written by the adapter code) logged as a run, `compare`
at --horizon on a few windows, promote that comparison row, then delete the workspace — what trading
code has after a hand-off. Then each checkout runs the same command `--repeat` times in a fresh
process (OMP_NUM_THREADS=1): this tree, and with `--before REF` REF exported with `git archive`, side
by side in one run. It also prints this tree's `python -X importtime` top entries and the split of
one in-process call (imports / model load / forecast).
Runs use cached bytecode, as an installed package does (one untimed run per checkout writes it;
--no-bytecode-cache compiles every run). Target (issue 11): < 5 s wall for a tiny preset on this
machine (quiet; cpu s is the load-free figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trees import child_env, children_cpu, export_ref  # noqa: E402


def _setup(tmp: Path, horizon: int) -> tuple[Path, Path]:
    """(data dir, hyperparams dir) of a promoted tiny toto SPY decision whose workspace is gone."""
    import torch

    from engine.events import EventWriter
    from engine.forecasters.realsize import write_random_adapter
    from engine.jobs import JobSpec
    from engine.tasks import compare
    from engine.tasks.context import TaskContext
    from store import Store

    torch.set_num_threads(1)
    data, ws, hp = tmp / "data", tmp / "ws", tmp / "hp"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "trainingdata" / "SPY.csv", data / "SPY.csv")
    adapter = write_random_adapter("toto", ws / "runs" / "r1" / "adapter")
    with Store.open(ws, hyperparams_dir=hp) as st:
        st.log_run("toto", "SPY", {"horizon": horizon, "preset": "tiny"}, {"val_mae_pct": 1.0},
                   checkpoint=str(adapter))
    job = ws / "jobs" / "job-compare"
    job.mkdir(parents=True)
    ctx = TaskContext(job_id="job-compare", workspace=ws, job_dir=job,
                      events=EventWriter(job / "events.jsonl", "job-compare"), data_dirs=[data])
    spec = JobSpec.create("compare", ["SPY"], None, params={
        "models": ["toto"], "horizon": horizon, "context": 64, "val_windows": 6, "test_windows": 6,
        "stride": 8, "top_k": 0})
    out = compare.run(spec, ctx)
    with Store.open(ws, hyperparams_dir=hp) as st:
        st.put_comparisons(out.get("comparisons", []))
        st.promote("toto", "SPY", "comparison", horizon=horizon, preset="tiny", by="bench")
    shutil.rmtree(ws)
    return data, hp


def _command(data: Path, hp: Path, ws: Path) -> list[str]:
    return [sys.executable, "-m", "console.cli", "--data", str(data), "--hyperparams", str(hp), "--workspace",
            str(ws), "forecast", "--stocks", "SPY", "--model", "toto", "--json"]


#: Whether the timed runs may use cached bytecode (set from --no-bytecode-cache in main).
BYTECODE_CACHE = True


def _env(tree: Path) -> dict[str, str]:
    return child_env(tree, bytecode_cache=BYTECODE_CACHE)


def _time(tree: Path, cmd: list[str], repeat: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU (user+sys) seconds of each run of `cmd` with `tree` first on the path, and the
    rows printed. CPU time is what the process itself costs; wall time also counts waiting for a
    core on a loaded machine."""
    times, cpus, rows = [], [], 0
    if BYTECODE_CACHE:  # one untimed run writes the tree's bytecode (what an install does)
        subprocess.run(cmd, env=_env(tree), cwd=tree, capture_output=True, check=False)
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), children_cpu()
        out = subprocess.run(cmd, env=_env(tree), cwd=tree, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - t0)
        cpus.append(children_cpu() - c0)
        if out.returncode != 0:
            raise SystemExit(f"{tree}: exit {out.returncode}\n{out.stderr[-2000:]}")
        rows = len(json.loads(out.stdout)[0]["rows"])
    return times, cpus, rows


def _importtime(tree: Path, cmd: list[str], top: int = 12) -> list[tuple[float, str]]:
    """The `top` packages by cumulative import time (s) of one run of `cmd` in `tree`."""
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=_env(tree), cwd=tree, capture_output=True,
                         text=True, check=False)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = (x.strip() for x in line[len("import time:"):].split("|"))
        if cum.isdigit() and "." not in name.strip():
            rows.append((int(cum) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:top]


def _split(tree: Path, data: Path, hp: Path) -> str:
    """One in-process call, timed by stage (a fresh interpreter)."""
    code = (
        "import sys, time; t0=time.perf_counter()\n"
        "from engine.serve import load_promoted\n"
        "t1=time.perf_counter(); m=load_promoted('toto','SPY',sys.argv[1]); m.bank(); t2=time.perf_counter()\n"
        "m.forecast(sys.argv[2]); t3=time.perf_counter()\n"
        "print(f'import engine.serve {t1-t0:.2f} s, model+adapter load {t2-t1:.2f} s, forecast {t3-t2:.2f} s')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(hp), str(data / "SPY.csv")], env=_env(tree), cwd=tree,
                         capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr[-500:]).strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="a git ref to time beside this tree (e.g. main, 1baa35a)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="compile the project's modules from source on every run (PYTHONDONTWRITEBYTECODE=1)")
    args = ap.parse_args()
    global BYTECODE_CACHE
    BYTECODE_CACHE = not args.no_bytecode_cache
    base = Path(tempfile.mkdtemp(prefix="bench-forecast-", dir=os.environ.get("BENCH_DIR")))
    trees = [("this tree", ROOT)]
    try:
        t0 = time.perf_counter()
        data, hp = _setup(base / "setup", args.horizon)
        print(f"setup (adapter, compare, promote, workspace deleted): {time.perf_counter() - t0:.1f} s")
        if args.before:
            wt = export_ref(args.before, base / "before")
            trees.insert(0, (f"before ({args.before})", wt))
        cmd = _command(data, hp, base / "no-workspace")
        print(f"command: {' '.join(cmd[1:])}  (OMP_NUM_THREADS=1, {args.repeat} runs each, "
              f"{'bytecode cached after one untimed run' if BYTECODE_CACHE else 'no bytecode cache'})")
        print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        print(f"{'checkout':<22} {'wall median s':>13} {'min s':>7} {'max s':>7} {'cpu median s':>13}  rows")
        for name, tree in trees:
            times, cpus, rows = _time(tree, cmd, args.repeat)
            print(f"{name:<22} {statistics.median(times):>13.2f} {min(times):>7.2f} {max(times):>7.2f} "
                  f"{statistics.median(cpus):>13.2f}  {rows}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        for name, tree in trees:
            print(f"{name}: {_split(tree, data, hp)}")
        print("this tree, top imports by cumulative time (python -X importtime):")
        for s, mod in _importtime(ROOT, cmd):
            print(f"  {s:6.2f} s  {mod}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
