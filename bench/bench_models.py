"""Benchmarks for the model adapters (prints figures; not a test).

1. Kronos: our cached decoder vs upstream `auto_regressive_inference` (what KronosPredictor runs),
   same seed and inputs; checks the outputs are identical and prints the speed-up.
2. Training steps/s per model (tiny preset; `--presets pretrained` where weights are cached).

    python bench/bench_models.py [--context 256] [--horizon 32] [--samples 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import torch

warnings.filterwarnings("ignore")


def bench_kronos(context: int, horizon: int, samples: int, config: dict[str, Any] | None, label: str) -> None:
    from kronos_finance._vendor.kronos_model.kronos import auto_regressive_inference

    from engine.forecasters.kronos import KronosForecaster
    from engine.forecasters.kronos_decode import generate_tokens

    fc = KronosForecaster("tiny", model_config=config or {})
    model, tok = fc.model.eval(), fc.tokenizer.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, context, 6, generator=g)
    stamps = torch.randint(0, 5, (1, context + horizon, 5), generator=g).float()
    mc = context + horizon
    kw = dict(T=1.0, top_k=0, top_p=0.9, sample_count=samples)
    torch.manual_seed(11)
    t = time.perf_counter()
    ref = auto_regressive_inference(tok, model, x, stamps[:, :context], stamps[:, context:], mc, horizon, 5, **kw)
    t_ref = time.perf_counter() - t

    torch.manual_seed(11)
    t = time.perf_counter()
    with torch.no_grad():
        xr = torch.clip(x, -5, 5).repeat_interleave(samples, 0)
        s1, s2 = tok.encode(xr, half=True)
        st = stamps.repeat_interleave(samples, 0)
        g1, g2 = generate_tokens(model, s1, s2, st, horizon, max_context=mc, temperature=1.0, top_k=0, top_p=0.9,
                                 generator=None)
        z = tok.decode([torch.cat([s1, g1], 1)[:, -mc:], torch.cat([s2, g2], 1)[:, -mc:]], half=True)
        mine = z.reshape(-1, samples, z.size(1), z.size(2)).cpu().numpy().mean(axis=1)
    t_mine = time.perf_counter() - t
    same = np.array_equal(ref, mine)
    print(f"kronos {label:6s} ctx {context} H {horizon} S {samples}: upstream {t_ref:.2f}s  cached {t_mine:.2f}s  "
          f"speed-up ×{t_ref / t_mine:.1f}  identical outputs: {same} (max |diff| {np.abs(ref - mine).max():.2e})")


def bench_training(model: str, preset: str, context: int, horizon: int, steps: int = 10) -> None:
    from engine.forecasters.registry import ModelLoadError, load_forecaster
    from engine.forecasters.training import TrainConfig, train, windows_from_close

    close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 2000))
    tr = windows_from_close(close, 0, 1500, context, horizon, stride=4)
    va = windows_from_close(close, 1500, 1700, context, horizon, span="val", train_end=1500)
    try:
        fc: Any = load_forecaster(model, preset)
    except ModelLoadError as exc:  # pretrained weights not cached
        print(f"train  {model:8s} {preset:10s}: skipped ({str(exc)[:120]})")
        return
    fc.prepare_finetune("lora", rank=8)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_steps_per_epoch=steps, val_batches=1)
    r = train(fc, tr, va, cfg)
    print(f"train  {model:8s} {preset:10s} ctx {context} H {horizon} B 16: {r.steps_per_s:.2f} steps/s "
          f"(loss {r.train_losses[0]:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--horizon", type=int, default=32)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["tiny"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bench_kronos(a.context, a.horizon, a.samples, None, "tiny")
    bench_kronos(a.context, a.horizon, a.samples,
                 dict(d_model=256, n_heads=4, ff_dim=512, n_layers=4), "medium")
    for preset in a.presets:
        for model in ("toto", "kronos", "chronos2"):
            bench_training(model, preset, a.context, a.horizon)


if __name__ == "__main__":
    main()
