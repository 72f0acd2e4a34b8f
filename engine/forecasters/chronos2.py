"""Chronos-2 (Amazon, package `chronos-forecasting`) behind the common Forecaster interface.

Chronos-2 predicts quantiles, not paths. Why the sampler: every other model hands metrics a
`[W, S, H]` array, so we draw samples from the predicted quantile function by inverse-CDF
interpolation with fixed-seed uniforms (flat beyond the outermost levels). The quantiles
themselves are returned in `Forecast.quantiles` for metrics that prefer them.

Contexts are standardised by their own mean/std before the model (which instance-normalises again;
the two compose to the same thing) so custom losses are on the context-normalised scale. Horizons
longer than the model's output patches are unrolled by appending the median, as upstream does.
LoRA targets `q, k, v, o, output_layer`; the native loss is the model's own quantile loss.

The point/heteroscedastic losses (huber, mse, heteroscedastic) train the median (and q0.1/q0.9)
*plus* the pinball loss over every level. Why: `forecast` sorts the levels into a monotone
quantile function and samples from all of them, so levels the loss ignores stay wherever they
were; on a tiny (random) model the sort then replaced the trained median with an untrained level
(GOOG h=16: val MAE% 12.5 from the sorted median vs 8.8 from the raw median head).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from engine.forecasters.base import DrawGroup, Forecast, grid_values, window_rngs
from engine.forecasters.hub import ModelLoadError, loading_weights, resolve_weights, source_label
from engine.forecasters.lora import FoundationForecaster, seeded
from engine.forecasters.losses import gaussian_nll, pinball, point_loss, validate_loss
from engine.forecasters.toto import batch_arrays, check_forecast_args, context_stats

HUB_ID = "amazon/chronos-2"
TINY_SEED = 20240602
QUANTILES: list[float] = [0.01, 0.05] + [round(0.1 * i, 1) for i in range(1, 10)] + [0.95, 0.99]
TINY_CORE: dict[str, Any] = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, dropout_rate=0.0,
                                 attn_implementation="sdpa")
TINY_CHRONOS: dict[str, Any] = dict(context_length=1024, input_patch_size=16, input_patch_stride=16,
                                    output_patch_size=16, quantiles=QUANTILES, use_reg_token=True,
                                    use_arcsinh=True, max_output_patches=4, time_encoding_scale=1024)
#: z-score of the 0.9 quantile: (q0.9 - q0.1) / (2 × 1.2816) is a Gaussian's standard deviation.
_Z90 = 1.2815515655446004


def sample_quantiles(levels: np.ndarray, qvals: np.ndarray, num_samples: int, seed: int,
                     origins: Any | None = None) -> np.ndarray:
    """Draw `[W, S, H]` samples from quantiles `[W, Q, H]` by linear inverse-CDF interpolation.

    Each window's uniforms come from its own generator (`window_rngs(seed, origins)`), so a window's
    samples do not depend on the other windows of the call; without origins, windows are numbered."""
    levels = np.asarray(levels, dtype=np.float64)
    q = np.sort(np.asarray(qvals, dtype=np.float64), axis=1)  # guard against quantile crossing
    w_n, n_q, h = q.shape
    rngs = window_rngs(seed, np.arange(w_n) if origins is None else origins)
    u = np.stack([g.random((num_samples, h)) for g in rngs]) if w_n else np.empty((0, num_samples, h))
    j = np.clip(np.searchsorted(levels, u), 1, n_q - 1)
    lo_l, hi_l = levels[j - 1], levels[j]
    frac = np.clip((u - lo_l) / (hi_l - lo_l), 0.0, 1.0)
    wi = np.arange(w_n)[:, None, None]
    hi_ = np.arange(h)[None, None, :]
    lo_v = q[wi, j - 1, hi_]
    hi_v = q[wi, j, hi_]
    return lo_v + frac * (hi_v - lo_v)


class Chronos2Forecaster(FoundationForecaster):
    name = "chronos2"
    patch_size = 16
    lora_targets: ClassVar[tuple[str, ...]] = ("q", "k", "v", "o", "output_layer")
    supported_losses: ClassVar[tuple[str, ...]] = ("native", "quantile", "huber", "heteroscedastic", "mse")
    default_loss = "native"
    patch_sizes: ClassVar[dict[str, int]] = {"tiny": 16, "pretrained": 16}
    default_sources: ClassVar[tuple[str, ...]] = (HUB_ID,)
    #: Quantiles do not depend on num_samples and each window's uniforms are one `(S, H)` draw in
    #: sample-major order, so the first n samples of a larger draw are the draw of n.
    nested_draws: ClassVar[bool] = True

    @classmethod
    def default_config(cls, preset: str = "tiny") -> dict[str, Any]:
        return {"num_samples": 100, "aggregation": "median"}

    @classmethod
    def search_space(cls, *, context: int, preset: str = "tiny", full: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DrawGroup]:
        """Context lengths × quantile-friendly aggregations (samples come from its quantiles)."""
        o = dict(overrides or {})
        ctxs = grid_values(o, "contexts", sorted({max(16, context // 4), max(16, context // 2), context}))
        sizes = grid_values(o, "num_samples", [100])
        aggs = grid_values(o, "aggregations", ["median", "mean", "q0.4", "q0.6"])
        return [DrawGroup({}, c, sorted(sizes), aggs) for c in ctxs]

    def __init__(self, preset: str = "tiny", device: str = "cpu", source: str | None = None, **config: Any) -> None:
        super().__init__(preset, device, source)
        from chronos.chronos2 import Chronos2CoreConfig, Chronos2Model

        if preset == "tiny":
            core = {**TINY_CORE, **{k: v for k, v in config.items() if k in TINY_CORE}}
            chron = {**TINY_CHRONOS, **{k: v for k, v in config.items() if k in TINY_CHRONOS}}
            cfg = Chronos2CoreConfig(**core, chronos_config=chron)
            cfg.architectures = ["Chronos2Model"]
            cfg.chronos_pipeline_class = "Chronos2Pipeline"
            with seeded(TINY_SEED):
                self.model = Chronos2Model(cfg)
            self.source = "tiny"
        elif preset == "pretrained":
            src = source or HUB_ID
            path = resolve_weights("chronos2", src, required=("config.json",))
            with loading_weights("chronos2", path):
                self.model = Chronos2Model.from_pretrained(str(path))
            self.source = source_label(src, path)
        else:
            raise ModelLoadError(f"chronos2: unknown preset {preset!r}; choose tiny or pretrained")
        self.model.to(device).eval()
        cc = self.model.chronos_config
        self.levels = np.asarray(cc.quantiles, dtype=np.float64)
        self.out_patch = int(cc.output_patch_size)
        self.max_patches = int(cc.max_output_patches)
        self.max_context = int(cc.context_length)
        self._median = int(np.argmin(np.abs(self.levels - 0.5)))
        self._q10 = int(np.argmin(np.abs(self.levels - 0.1)))
        self._q90 = int(np.argmin(np.abs(self.levels - 0.9)))

    def adapt_root(self) -> Any:
        return self.model

    # ---- forecasting ---------------------------------------------------------------------------
    def predict_quantiles(self, context: np.ndarray, horizon: int, chunk_size: int = 256) -> np.ndarray:
        """Quantiles `[W, Q, H]` on the scale of `context` (already normalised by the caller)."""
        import torch

        w_n = context.shape[0]
        out = np.empty((w_n, len(self.levels), horizon), dtype=np.float64)
        self.model.eval()
        for start in range(0, w_n, chunk_size):
            sl = slice(start, min(w_n, start + chunk_size))
            ctx = torch.tensor(context[sl][:, -self.max_context:], dtype=torch.float32, device=self.device)
            pieces: list[torch.Tensor] = []
            done = 0
            with torch.inference_mode():
                while done < horizon:
                    n_p = min(self.max_patches, math.ceil((horizon - done) / self.out_patch))
                    qp = self.model(context=ctx[:, -self.max_context:], num_output_patches=n_p).quantile_preds
                    pieces.append(qp)
                    done += qp.shape[-1]
                    if done < horizon:  # unroll: feed the median back as if observed
                        ctx = torch.cat([ctx, qp[:, self._median]], dim=1)
            out[sl] = torch.cat(pieces, dim=-1)[..., :horizon].double().cpu().numpy()
        return out

    def forecast(self, windows: Any, num_samples: int = 1, *, seed: int = 0, chunk_size: int = 256,
                 **params: Any) -> Forecast:
        check_forecast_args(self.name, num_samples, params)
        t0 = time.perf_counter()
        ctx = np.asarray(windows.context_close, dtype=np.float64)
        mu, sd = context_stats(ctx)
        qn = self.predict_quantiles((ctx - mu[:, None]) / sd[:, None], int(windows.horizon), chunk_size)
        # sorted: a monotone quantile function (an untrained model can cross its quantiles)
        q = np.sort(qn * sd[:, None, None] + mu[:, None, None], axis=1)
        samples = sample_quantiles(self.levels, q, num_samples, seed, windows.origins)
        quantiles = {float(lv): q[:, i, :] for i, lv in enumerate(self.levels)}
        return Forecast(samples=samples, quantiles=quantiles, latency_s=time.perf_counter() - t0,
                        info={"model": self.name, "preset": self.preset, "num_samples": num_samples})

    # ---- training ------------------------------------------------------------------------------
    def batch_loss(self, batch: Any, loss: str, *, delta: float = 1.0) -> Any:
        import torch

        loss = validate_loss(loss, self.supported_losses)
        ctx, tgt, mu, sd = batch_arrays(batch)
        h = min(tgt.shape[1], self.max_patches * self.out_patch)
        c = torch.tensor(((ctx - mu[:, None]) / sd[:, None])[:, -self.max_context:], dtype=torch.float32,
                         device=self.device)
        y = torch.tensor(((tgt - mu[:, None]) / sd[:, None])[:, :h], dtype=torch.float32, device=self.device)
        n_p = math.ceil(h / self.out_patch)
        if loss == "native":
            return self.model(context=c, future_target=y, num_output_patches=n_p).loss
        qp = self.model(context=c, num_output_patches=n_p).quantile_preds[..., :h]
        coherence = pinball(qp, y, tuple(self.levels))
        if loss == "quantile":
            return coherence
        med = qp[:, self._median]
        if loss == "heteroscedastic":
            sigma = (qp[:, self._q90] - qp[:, self._q10]) / (2 * _Z90)
            return gaussian_nll(med, sigma**2, y) + coherence
        # + the pinball term: forecasts sort all levels, so untrained ones would corrupt the median
        return point_loss(loss, med, y, delta=delta) + coherence
