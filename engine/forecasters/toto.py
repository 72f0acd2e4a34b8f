"""Toto (Datadog, package `toto-ts`) behind the common Forecaster interface.

Why these choices:
- Each window is standardised by its own context's close mean/std before the model sees it
  (Toto scales causally inside as well), and samples are mapped back to price space; nothing from
  the horizon enters the normalisation.
- Each window is one `TotoForecaster.forecast` call (its samples batched inside it) under its own
  seed (seed + origin) in a forked RNG scope: upstream draws a batch's samples from torch's global
  RNG in batch order, so with it one window's forecast would change when other windows are batched
  with it. Per-window seeds make the same seed and window give the same samples whatever else is
  in the call, without disturbing the caller.
- Samples are drawn in blocks (`sample_block`) and cut to `num_samples`: upstream draws its sample
  batches one after another from that RNG, each batch's draws depending only on its shape, so draws
  with the same block nest (a draw of n samples is exactly the first n of a larger one; `draw_group`),
  and validation scores every smaller `num_samples` of a group on a prefix of one draw. A block size
  chosen per call (a divisor of n) would give other samples for every n. The block is the preset's
  `SAMPLE_BLOCKS` size, or n when n is smaller and the preset's `SMALLEST_BLOCKS` allows: on tiny any
  n <= 32 is one block of 32 (a tiny call's CPU time is mostly per call, not per sample: 4 samples
  cost about 1.5x, while blocks of 8 would make the default 32 cost 2.6x); on pretrained a draw of
  fewer than 256 samples is one block of its own size (a real-size model's time is per sample: 2
  samples drawn as 256 cost the pretrained-folder test 30 s), and the grids' 256…2048 nest.
- LoRA wraps the backbone (`toto.model`; `Toto` itself has no forward) on `wQKV, wO, mlp.0, mlp.2`.
  Training follows Toto's own convention: the target is the input shifted by one patch, and the
  loss is on the model's causally scaled values.
- toto-ts needs only `gluonts.torch.distributions`, but importing it runs `gluonts/torch/__init__.py`,
  which imports every gluonts estimator and with them lightning and torchmetrics, and gluonts'
  distributions bind `scipy.stats` names for `cdf`/`icdf` and forecast generators for gluonts
  predictors that toto never calls (seconds of a tiny `forecast`). `_import_toto` imports toto without them (engine.forecasters.deferred_imports).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from engine.forecasters.base import AGGREGATIONS, DrawGroup, Forecast, grid_values, window_seed
from engine.forecasters.deferred_imports import defer_package_init, names_deferred
from engine.forecasters.hub import ModelLoadError, loading_weights, resolve_weights, source_label
from engine.forecasters.lora import FoundationForecaster, seeded
from engine.forecasters.losses import gaussian_nll, point_loss, validate_loss

HUB_ID = "Datadog/Toto-Open-Base-1.0"
#: Samples per upstream call by preset (`samples_per_batch`'s default): the largest quick-grid size on
#: tiny (one call per window for the whole quick grid on a CPU), upstream's batch size on pretrained.
SAMPLE_BLOCKS: dict[str, int] = {"tiny": 32, "pretrained": 256}
#: The smallest block by preset (see the module doc): a draw of fewer samples is still one block this big.
SMALLEST_BLOCKS: dict[str, int] = {"tiny": 32, "pretrained": 1}


def sample_block(preset: str, num_samples: int, samples_per_batch: int | None = None) -> int:
    """Samples per upstream call for a draw of `num_samples` (draws with the same block nest)."""
    most = int(samples_per_batch or SAMPLE_BLOCKS.get(preset, SAMPLE_BLOCKS["pretrained"]))
    if most < 1:
        raise ValueError(f"toto: samples_per_batch must be >= 1, got {samples_per_batch}")
    return min(most, max(int(num_samples), SMALLEST_BLOCKS.get(preset, 1)))
TINY_SEED = 20240601
TINY_CONFIG: dict[str, Any] = dict(
    patch_size=16, stride=16, embed_dim=64, num_layers=2, num_heads=4, mlp_hidden_dim=128,
    dropout=0.0, spacewise_every_n_layers=2,
    scaler_cls="<class 'model.scaler.CausalPatchStdMeanScaler'>",
    output_distribution_classes=["<class 'model.distribution.MixtureOfStudentTsOutput'>"],
    output_distribution_kwargs={"k_components": 4},
    spacewise_first=True, use_memory_efficient_attention=False,
    stabilize_with_global=True, scale_factor_exponent=10.0,
)


#: What gluonts' distribution outputs bind from gluonts.model.forecast_generator for their
#: `forecast_generator` property (used by gluonts predictors, never by toto's sampling); importing it
#: runs gluonts.model and gluonts.dataset (pandas, toolz: ~0.4 s of a tiny `forecast`).
FORECAST_GENERATORS = ("DistributionForecastGenerator", "ForecastGenerator", "QuantileForecastGenerator",
                       "SampleForecastGenerator")


def _import_toto(module: str = "toto.model.toto", name: str = "Toto") -> Any:
    """A class of toto-ts (`Toto`, or `TotoBackbone` from toto.model.backbone), without gluonts'
    estimators and scipy.stats (see the module doc)."""
    import importlib
    import warnings

    import torch  # noqa: F401 - imported before the stand-in below exists (its import probes sys.modules)

    defer_package_init("gluonts.torch")
    with warnings.catch_warnings(), names_deferred("scipy.stats", ("t", "nbinom")), \
            names_deferred("gluonts.model.forecast_generator", FORECAST_GENERATORS):
        # gluonts' advice to install orjson, on every import: not ours to act on
        warnings.filterwarnings("ignore", message="Using `json`-module", category=UserWarning)
        return getattr(importlib.import_module(module), name)


class AffineSample:
    """`base * scale + loc` as upstream's sampling loop uses it (`.sample()`, `.mean`).

    Why not gluonts' AffineTransformed (what upstream builds): a torch TransformedDistribution
    checks its shape with `torch.broadcast_shapes`, whose first call imports
    torch.fx.experimental.symbolic_shapes and sympy (~0.7 s of a tiny `forecast`). The values are
    computed exactly as torch's AffineTransform does (`loc + scale * x`, under no_grad), so the
    samples are the same floats (tests/test_toto_sampler.py compares them with upstream's)."""

    def __init__(self, base: Any, loc: Any, scale: Any) -> None:
        self.base_dist, self.loc, self.scale = base, loc, scale

    def sample(self, sample_shape: Any = ()) -> Any:
        import torch

        with torch.no_grad():
            return self.loc + self.scale * self.base_dist.sample(torch.Size(sample_shape))

    @property
    def mean(self) -> Any:
        return self.base_dist.mean * self.scale + self.loc


@functools.cache
def upstream_sampler() -> type:
    """toto-ts's TotoForecaster, drawing from `AffineSample` instead of AffineTransformed."""
    from toto.inference.forecaster import TotoForecaster as _Upstream

    class TotoSampler(_Upstream):
        @staticmethod
        def create_affine_transformed(base_distr: Any, loc: Any, scale: Any) -> Any:
            if loc.shape[-1] != 1:  # per-step loc/scale (causal scaler): the suffix the base covers
                steps = base_distr.mean.shape[-1]
                loc, scale = loc[:, :, -steps:], scale[:, :, -steps:]
            return AffineSample(base_distr, loc, scale)

    return TotoSampler


def context_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-window mean and a never-zero std over the last axis (a flat context must not divide by 0)."""
    mu = x.mean(axis=-1)
    sd = x.std(axis=-1)
    floor = np.maximum(np.abs(mu) * 1e-4, 1e-8)
    return mu, np.maximum(sd, floor)


def check_forecast_args(model: str, num_samples: int, params: dict[str, Any]) -> None:
    """The argument checks of a quantile/sample `forecast` (Toto, Chronos-2): same rules, same words."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if params:
        raise ValueError(f"{model}: unknown forecast parameter(s): {', '.join(sorted(params))}")


def batch_arrays(batch: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(context close, targets, mu, sd)` of a training batch, float64; mu/sd from the context only."""
    ctx = np.asarray(batch.context_close, dtype=np.float64)
    tgt = np.asarray(batch.targets, dtype=np.float64)
    mu, sd = context_stats(ctx)
    return ctx, tgt, mu, sd


class TotoForecaster(FoundationForecaster):
    name = "toto"
    lora_targets: ClassVar[tuple[str, ...]] = ("wQKV", "wO", "mlp.0", "mlp.2")
    supported_losses: ClassVar[tuple[str, ...]] = ("native", "huber", "heteroscedastic", "mse")
    default_loss = "native"
    # Toto-Open-Base uses 64-step patches; the tiny preset 16 (TINY_CONFIG).
    patch_sizes: ClassVar[dict[str, int]] = {"tiny": 16, "pretrained": 64}
    default_sources: ClassVar[tuple[str, ...]] = (HUB_ID,)
    def draw_group(self, num_samples: int, params: Mapping[str, Any]) -> int | None:
        """Draws with the same sample block nest (see the module doc)."""
        return sample_block(self.preset, num_samples, params.get("samples_per_batch"))

    @classmethod
    def default_config(cls, preset: str = "tiny") -> dict[str, Any]:
        return {"num_samples": 32 if preset == "tiny" else 256, "aggregation": "median"}

    @classmethod
    def search_space(cls, *, context: int, preset: str = "tiny", full: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DrawGroup]:
        """Sample counts × every aggregation (one draw per context serves them all)."""
        o, tiny = dict(overrides or {}), preset == "tiny"
        sizes = grid_values(o, "num_samples", ([8, 16, 32] if tiny else [256, 512, 1024, 2048]) if not full
                            else ([8, 16, 32, 64, 128] if tiny else [256, 512, 1024, 2048, 4096]))
        aggs = grid_values(o, "aggregations", list(AGGREGATIONS))
        return [DrawGroup({}, c, sorted(sizes), aggs) for c in grid_values(o, "contexts", [context])]

    def __init__(self, preset: str = "tiny", device: str = "cpu", source: str | None = None, **config: Any) -> None:
        super().__init__(preset, device, source)
        if preset == "tiny":
            # the backbone alone: `Toto` is a hub wrapper around it (its module imports huggingface_hub
            # and yaml) whose __init__ only builds TotoBackbone(**config), so the seeded weights are the same
            TotoBackbone = _import_toto("toto.model.backbone", "TotoBackbone")  # noqa: N806 - the class

            with seeded(TINY_SEED):
                self.backbone = TotoBackbone(**{**TINY_CONFIG, **config})
            self.source = "tiny"
        elif preset == "pretrained":
            Toto = _import_toto()  # noqa: N806 - the class

            src = source or HUB_ID
            path = resolve_weights("toto", src, required=("model.safetensors",))
            with loading_weights("toto", path):
                self.backbone = Toto.load_from_checkpoint(str(path), map_location="cpu", **config).model
            self.source = source_label(src, path)
        else:
            raise ModelLoadError(f"toto: unknown preset {preset!r}; choose tiny or pretrained")
        self.backbone.to(device).eval()
        self.patch = int(self.backbone.patch_embed.stride)

    @property
    def patch_size(self) -> int:  # type: ignore[override]
        return self.patch

    def adapt_root(self) -> Any:
        return self.backbone

    # ---- forecasting ---------------------------------------------------------------------------
    def forecast(self, windows: Any, num_samples: int = 1, *, seed: int = 0, chunk_size: int | None = None,
                 samples_per_batch: int | None = None, **params: Any) -> Forecast:
        """Sample paths `[W, S, H]` in price space; one upstream call per window, its samples drawn in
        blocks (`sample_block`: `samples_per_batch`, default the preset's) and cut to `num_samples`."""
        import torch
        from toto.data.util.dataset import MaskedTimeseries

        check_forecast_args(self.name, num_samples, params)
        t0 = time.perf_counter()
        ctx = np.asarray(windows.context_close, dtype=np.float64)
        w_n, _ = ctx.shape
        horizon = int(windows.horizon)
        mu, sd = context_stats(ctx)
        norm = (ctx - mu[:, None]) / sd[:, None]
        block = sample_block(self.preset, num_samples, samples_per_batch)
        drawn = -(-num_samples // block) * block  # whole blocks: within a block size the first n never depend on n
        out = np.empty((w_n, num_samples, horizon), dtype=np.float64)
        fc = upstream_sampler()(self.backbone)
        self.backbone.eval()
        origins = np.asarray(windows.origins).reshape(-1)
        # one window per upstream call, under its own seed (seed + origin): upstream draws every
        # sample of a batch from torch's global RNG in batch order, so a shared batch would make a
        # window's samples depend on its neighbours. `chunk_size` is accepted for compatibility.
        del chunk_size
        for start in range(w_n):
            sl = slice(start, start + 1)
            series = torch.tensor(norm[sl], dtype=torch.float32, device=self.device)[:, None, :]
            b = series.shape[0]
            inputs = MaskedTimeseries(
                series=series,
                padding_mask=torch.ones_like(series, dtype=torch.bool),
                id_mask=torch.zeros_like(series),
                timestamp_seconds=torch.zeros_like(series, dtype=torch.int64),
                time_interval_seconds=torch.full((b, 1), 86400, dtype=torch.int64, device=self.device),
            )
            with seeded(window_seed(seed, origins[start])), torch.inference_mode():
                f = fc.forecast(inputs, prediction_length=horizon, num_samples=drawn,
                                samples_per_batch=block, use_kv_cache=True)
            s = f.samples[:, 0, :, :num_samples].permute(0, 2, 1).double().cpu().numpy()  # (b, S, H)
            out[sl] = s * sd[sl, None, None] + mu[sl, None, None]
        return Forecast(samples=out, latency_s=time.perf_counter() - t0,
                        info={"model": self.name, "preset": self.preset, "num_samples": num_samples})

    # ---- training ------------------------------------------------------------------------------
    def batch_loss(self, batch: Any, loss: str, *, delta: float = 1.0) -> Any:
        """Next-patch loss over the whole window (context + horizon), context-normalised."""
        import torch

        loss = validate_loss(loss, self.supported_losses)
        ctx, tgt, mu, sd = batch_arrays(batch)
        full = (np.concatenate([ctx, tgt], axis=1) - mu[:, None]) / sd[:, None]
        p = self.patch
        usable = full.shape[1] - p
        if usable < p:
            raise ValueError(f"toto: window of {full.shape[1]} steps is shorter than two patches of {p}")
        full = full[:, (usable % p):]
        x = torch.tensor(full[:, :-p], dtype=torch.float32, device=self.device)[:, None, :]
        y = torch.tensor(full[:, p:], dtype=torch.float32, device=self.device)[:, None, :]
        out = self.backbone(x, torch.ones_like(x, dtype=torch.bool), torch.zeros_like(x))
        yt = (y - out.loc) / (out.scale + 1e-6)
        dist = out.distribution
        if loss == "native":
            return -dist.log_prob(yt).mean()
        if loss == "heteroscedastic":
            return gaussian_nll(dist.mean, dist.variance.clamp(max=1e4), yt)
        return point_loss(loss, dist.mean, yt, delta=delta)
