"""Validation-search throughput: batched + one shared draw vs one model call per window and parameter set.

    python bench/bench_validate.py [--model toto] [--windows 16] [--symbol SPY]
    python bench/bench_validate.py --before main [--models toto kronos] [--repeat 3]

Both paths evaluate the same candidates (num_samples x aggregation for Toto/Chronos-2) on the same
validation windows and score them with engine.metrics. "forecasts" = candidates x windows. The loop
draws separately per (window, candidate), so its samples differ by sampling noise only; the bench
prints both picks and the largest difference of a candidate's validation MAE%.

With `--before REF`: the real validate job (tiny preset, --symbol, h=--horizon, default windows, seed 0)
per model, in a fresh process per run (OMP_NUM_THREADS=1), for REF (exported with `git archive`)
and this tree, runs alternating, side by side in one run: wall and CPU seconds of `validate.run`
(model load included), its model calls, the pick, the pick's recorded validation MAE% and that of a
fresh draw of the pick's config on the same windows (what compare and `forecast` compute; equal
only when the search scored the config on the draw a fresh call makes).
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trees import child_env, export_ref  # noqa: E402

#: One validate job in a child process; prints one JSON line. Uses only APIs both trees have.
JOB_CHILD = """import json, sys, time, warnings
warnings.filterwarnings("ignore")
import torch
torch.set_num_threads(1)
from engine import evaluation as ev
from engine.events import EventWriter
from engine.jobs import JobSpec
from engine.tasks import validate
from engine.tasks.context import TaskContext
from pathlib import Path
model, symbol, horizon, ws = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
job = ws / "jobs" / "job-validate"
job.mkdir(parents=True)
ctx = TaskContext(job_id="job-validate", workspace=ws, job_dir=job,
                  events=EventWriter(job / "events.jsonl", "job-validate"), data_dirs=None)
spec = JobSpec.create("validate", [symbol], model, params={"horizon": horizon})
t0, c0 = time.perf_counter(), time.process_time()
pick = validate.run(spec, ctx)["picks"][0]
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
setup = ev.build_setup(symbol, horizon=horizon, context=pick["context"])
ref = ev.naive_reference(setup, "mae_pct")
vo = ev.run_config(ev.ModelCache(preset="tiny").bank(model), "val", setup.val, pick["config"], seed=0, crossfit=True)
fresh = ev.score(setup.val, vo.samples, vo.point, ref.val_point)["mae_pct"]
print(json.dumps({"wall": wall, "cpu": cpu, "calls": pick["model_calls"], "windows": setup.val.n,
                  "config": ev.config_key(pick["config"]), "recorded": pick["validation"]["mae_pct"], "fresh": fresh}))
"""


def job_side_by_side(before: str, models: list[str], symbol: str, horizon: int, repeat: int) -> None:
    """The real validate job per model in REF and in this tree, runs alternating (see the module doc)."""
    base = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        trees = [(f"before ({before})", export_ref(before, base / "before")), ("this tree", ROOT)]
        print(f"validate job: {symbol} h={horizon} tiny, default windows, seed 0; {repeat} runs per tree "
              f"and model, alternating; load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        print(f"{'model':<8} {'checkout':<16} {'wall med s':>10} {'cpu med s':>10} {'calls':>5}  pick "
              f"(recorded val MAE% / fresh draw of the pick)")
        for model in models:
            runs: dict[str, list[dict]] = {name: [] for name, _ in trees}
            for r in range(repeat):
                for name, tree in trees:
                    ws = base / f"ws-{model}-{r}-{len(runs[name])}-{name[:4]}"
                    out = subprocess.run([sys.executable, "-c", JOB_CHILD, model, symbol, str(horizon), str(ws)],
                                         env=child_env(tree), cwd=tree, capture_output=True, text=True, check=False)
                    if out.returncode:
                        raise SystemExit(f"{name} {model}: {out.stderr[-2000:]}")
                    runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for name, _ in trees:
                rs = runs[name]
                x = rs[-1]
                same = "equal" if x["recorded"] == x["fresh"] else f"differ by {abs(x['recorded'] - x['fresh']):.2e}"
                print(f"{model:<8} {name:<16} {statistics.median(r['wall'] for r in rs):>10.2f} "
                      f"{statistics.median(r['cpu'] for r in rs):>10.2f} {x['calls']:>5}  {x['config']} "
                      f"({x['windows']}w): {x['recorded']:.6f} / {x['fresh']:.6f} ({same})")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="toto", choices=("toto", "chronos2", "kronos"))
    ap.add_argument("--symbol", default="SPY")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--before", default=None, help="a git ref: time the validate job there and here (module doc)")
    ap.add_argument("--models", nargs="+", default=["toto", "kronos"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.before:
        job_side_by_side(args.before, args.models, args.symbol, args.horizon, args.repeat)
        return

    import torch

    torch.set_num_threads(1)
    from engine import evaluation as ev
    from engine.forecasters.base import aggregate
    from engine.metrics import evaluate
    from engine.tasks.validate import search, search_space

    setup = ev.build_setup(args.symbol, horizon=args.horizon, context=args.context, val_windows=args.windows,
                           test_windows=args.windows)
    groups = search_space(args.model, context=args.context, preset="tiny")
    cache = ev.ModelCache(preset="tiny")
    bank = cache.bank(args.model)
    naive = ev.naive_point(setup.val)
    bank.draw("warm", ev.truncate_context(setup.val.subset(np.arange(2)), groups[0].context), 2, groups[0].params)

    t0 = time.perf_counter()
    cands = search(bank, setup, groups, naive_val=naive)
    fast_s = time.perf_counter() - t0
    n_fc = len(cands) * setup.val.n

    # the loop: one model call per window and per parameter set
    fc = bank.forecaster
    t0 = time.perf_counter()
    loop_scores = []
    for c in cands:
        cfg = dict(c.config)
        meta, draw = ev.split_config(cfg)
        w_all = ev.truncate_context(setup.val, meta.get("context"))
        points, samples = [], []
        for i in range(setup.val.n):
            w = w_all.subset(np.array([i]))
            s = np.asarray(fc.forecast(w, int(meta["num_samples"]), seed=i, **draw).samples)
            samples.append(s)
            points.append(aggregate(s, meta["aggregation"]))
        sm, pt = np.concatenate(samples), np.concatenate(points)
        loop_scores.append(evaluate(setup.val, sm, pt, naive)["mae_pct"])
    loop_s = time.perf_counter() - t0

    best_fast = ev.select_best(cands)
    best_loop = cands[int(np.nanargmin(loop_scores))]
    diffs = [abs(a.validation["mae_pct"] - b) / b for a, b in zip(cands, loop_scores, strict=True)]
    print(f"model {args.model} (tiny) symbol {setup.symbol}: {len(cands)} candidates x {setup.val.n} windows "
          f"= {n_fc} forecasts, h={args.horizon}, context={args.context}")
    print(f"batched + shared draw: {fast_s:8.3f} s  {n_fc / fast_s:10.1f} forecasts/s  ({bank.calls - 1} model calls)")
    print(f"loop per window/param: {loop_s:8.3f} s  {n_fc / loop_s:10.1f} forecasts/s  ({n_fc} model calls)")
    print(f"speed-up: {loop_s / fast_s:.1f}x")
    print(f"pick (batched): {ev.config_key(best_fast.config)}  val MAE% {best_fast.validation['mae_pct']:.4f}")
    print(f"pick (loop):    {ev.config_key(best_loop.config)}  val MAE% {min(loop_scores):.4f}")
    print(f"largest relative difference of a candidate's val MAE% (sampling noise): {max(diffs) * 100:.2f}%")


if __name__ == "__main__":
    main()
