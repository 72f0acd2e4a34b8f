"""Cost of whole-span scoring vs the old "most recent 32 windows" default, for a tiny model.

    python bench/bench_whole_span.py [--model chronos2] [--symbol AAPL] [--horizon 64]

Runs the validate search (quick grid) and the test scoring of the winner, exactly as a validate job
does, on (a) the default windows (every origin of each span up to engine.evaluation's cap) and (b)
the old default (the last 32 stride-1 windows of each span). Prints seconds, windows, the share of
the span's rows the targets cover, and whether the DM p-value vs naive is defined. CPU seconds are
printed beside wall seconds because a shared machine inflates the wall clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="chronos2", choices=("toto", "chronos2", "kronos", "naive"))
    ap.add_argument("--symbol", default="AAPL")
    ap.add_argument("--horizon", type=int, default=64)
    ap.add_argument("--context", type=int, default=128)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from engine import evaluation as ev
    from engine.tasks.validate import validate_symbol

    whole = ev.build_setup(args.symbol, horizon=args.horizon, context=args.context)
    last32 = lambda w: w.subset(np.arange(max(0, w.n - 32), w.n))  # noqa: E731 - the old default
    old = dataclasses.replace(whole, val=last32(whole.val), test=last32(whole.test))
    print(f"{args.model} (tiny) on {whole.symbol}, h={args.horizon}, context={args.context}, quick grid")
    for name, setup in (("whole span (default)", whole), ("old: last 32 windows", old)):
        cache = ev.ModelCache(preset="tiny")
        t0, c0 = time.perf_counter(), time.process_time()
        pick = validate_symbol(cache, args.model, setup, adapter_run=None, mode="quick", overrides={}, seed=0,
                               metric="mae_pct", preset="tiny")
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert pick is not None
        parts = []
        for span in ("val", "test"):
            s = ev.window_spec(getattr(setup, span), setup.spans)
            parts.append(f"{span} {s['count']:4d} windows stride {s['stride']} rows {s['rows_covered']:4d}/"
                         f"{s['span_rows']} ({100 * s['rows_covered'] / s['span_rows']:5.1f}%)")
        p = pick["test"].get("dm_p_two_sided")
        print(f"{name:22s} {dt:7.2f} s wall {cpu:7.2f} s cpu  {'; '.join(parts)}; test DM p "
              f"{'n/a (T <= lags)' if p is None else f'{p:.3g}'}; {pick['decision_note']}")


if __name__ == "__main__":
    main()
