"""A fresh worker's LoRA train job: CPU and wall seconds, this tree beside `--before REF` (prints
figures; not a test).

    python bench/bench_train_start.py [--before main] [--repeat 3] [--steps 5] [--pytest [TEST_FILE ...]]

Each run is `python -m engine.worker <job dir>` (what the engine starts per train job, sweep trial or
pipeline train step) on a new train job: toto, tiny preset, `finetune=lora` (the default on pretrained
weights; tiny defaults to full), the shipped trainingdata/SPY.csv, one epoch of `--steps` steps, then
validation and the adapter written. Runs alternate between the trees (so a change in load hits both);
bytecode is cached after one untimed run per tree, as an installed package's is. Also printed per
tree: `prepare_finetune("lora")` alone in a fresh interpreter after the model is built (what LoRA's
injection costs: peft's import, or lora_inject's few linears), and with `--pytest` the wall/CPU of
`pytest` on the named test files (default tests/test_train_task.py tests/test_train_cmd.py; each tree
its own copy of them).
"""

from __future__ import annotations

import argparse
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

PREPARE = """import sys, time
from engine.forecasters.registry import load_forecaster
fc = load_forecaster("toto", "tiny")
c, t = time.process_time(), time.perf_counter()
fc.prepare_finetune("lora")
print(f"{time.process_time() - c:.2f} {time.perf_counter() - t:.2f} "
      f"{' '.join(m for m in ('peft', 'transformers', 'scipy') if m in sys.modules) or '-'}")
"""


def _job(base: Path, data: Path, steps: int) -> Path:
    from engine.jobs import JobSpec

    spec = JobSpec.create("train", ["SPY"], "toto", params={
        "finetune": "lora", "epochs": 1, "max_steps_per_epoch": steps, "mae_samples": 2})
    job_dir = base / "ws" / "jobs" / spec.id
    job_dir.mkdir(parents=True)
    spec.write(job_dir)
    return job_dir


def _run(tree: Path, cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    t0, c0 = time.perf_counter(), children_cpu()
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(cmd[1:3])} exit {out.returncode}\n{out.stderr[-2000:]}")
    return wall, cpu, out.stdout


PYTEST_FILES = ["tests/test_train_task.py", "tests/test_train_cmd.py"]


def _pytest(trees: list[tuple[str, Path]], files: list[str]) -> None:
    """Each tree's own copy of the test files; this tree once more without the tests the first tree
    lacks (the like-for-like figure)."""
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files]

    def ids(tree: Path) -> set[str]:
        out = _run(tree, [*pytest, "--collect-only"], child_env(tree))[2]  # -q: one id a line
        return {line for line in out.splitlines() if "::" in line}

    print("pytest " + " ".join(pytest[3:]) + ":")
    runs = [(name, tree, []) for name, tree in trees]
    if len(trees) > 1:
        new = sorted(ids(trees[-1][1]) - ids(trees[0][1]))
        runs.append((f"{trees[-1][0]} w/o new", trees[-1][1], [a for t in new for a in ("--deselect", t)]))
    for name, tree, extra in runs:
        wall, cpu, out = _run(tree, [*pytest, *extra], child_env(tree))
        print(f"  {name:<22} wall {wall:6.1f} s  cpu {cpu:6.1f} s  ({out.strip().splitlines()[-1]})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=None, help="a git ref to time beside this tree (e.g. main)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="optimizer steps of the one epoch")
    ap.add_argument("--pytest", nargs="*", metavar="TEST_FILE", default=None,
                    help=f"also time these test files in each tree (none named: {' '.join(PYTEST_FILES)})")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-train-start-", dir=os.environ.get("BENCH_DIR")))
    trees = [("this tree", ROOT)]
    try:
        if args.before:
            trees.insert(0, (f"before ({args.before})", export_ref(args.before, base / "before")))
        data = base / "data"
        data.mkdir()
        shutil.copy(ROOT / "trainingdata" / "SPY.csv", data / "SPY.csv")
        envs = {name: {**child_env(tree), "FORECAST_DATA": str(data)} for name, tree in trees}
        for name, tree in trees:  # writes the tree's bytecode
            _run(tree, [sys.executable, "-m", "engine.worker", str(_job(base / "warm" / name[:6], data, 1))],
                 envs[name])
        print(f"train job: toto tiny finetune=lora, SPY, 1 epoch of {args.steps} steps, mae_samples 2; "
              f"`python -m engine.worker`, OMP_NUM_THREADS=1, {args.repeat} runs each, alternating")
        print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in trees}
        for i in range(args.repeat):
            for name, tree in trees:
                job = _job(base / f"r{i}" / name[:6], data, args.steps)
                wall, cpu, _ = _run(tree, [sys.executable, "-m", "engine.worker", str(job)], envs[name])
                runs[name].append((wall, cpu))
        print(f"{'checkout':<22} {'wall median s':>13} {'min s':>7} {'max s':>7} {'cpu median s':>13} {'min s':>7}")
        for name, _ in trees:
            walls, cpus = [w for w, _ in runs[name]], [c for _, c in runs[name]]
            print(f"{name:<22} {statistics.median(walls):>13.2f} {min(walls):>7.2f} {max(walls):>7.2f} "
                  f"{statistics.median(cpus):>13.2f} {min(cpus):>7.2f}")
        print("prepare_finetune('lora') alone, fresh interpreter (cpu s, wall s, heavy modules then loaded):")
        for name, tree in trees:
            outs = [_run(tree, [sys.executable, "-c", PREPARE], envs[name])[2].split() for _ in range(args.repeat)]
            cpu = statistics.median(float(o[0]) for o in outs)
            wall = statistics.median(float(o[1]) for o in outs)
            print(f"  {name:<22} cpu {cpu:5.2f}  wall {wall:5.2f}  {' '.join(outs[0][2:])}")
        if args.pytest is not None:
            _pytest(trees, args.pytest or PYTEST_FILES)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
