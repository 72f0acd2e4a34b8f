"""Validation-search throughput: batched + one shared draw vs one model call per window and parameter set.

    python bench/bench_validate.py [--model toto] [--windows 16] [--symbol SPY]

Both paths evaluate the same candidates (num_samples x aggregation for Toto/Chronos-2) on the same
validation windows and score them with engine.metrics. "forecasts" = candidates x windows. The loop
draws separately per (window, candidate), so its samples differ by sampling noise only; the bench
prints both picks and the largest difference of a candidate's validation MAE%.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="toto", choices=("toto", "chronos2", "kronos"))
    ap.add_argument("--symbol", default="SPY")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--context", type=int, default=64)
    args = ap.parse_args()

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
