"""Kronos (NeoQuasar; model code vendored in `kronos_finance._vendor.kronos_model`) as a Forecaster.

The adapter: Kronos's declarations (presets, default config, search space, weights), its inputs
(features and time stamps exactly as upstream's `KronosPredictor` builds them) and its training loss.
Sampling goes through our cached decoder (`engine.forecasters.kronos_decode`: same tokens as
upstream for a seed, one transformer position per new token); `forecast` draws each path's tokens
from its own stream (`WindowStreams`, seeded from seed + origin + sample index), so a window's paths
do not depend on which windows share its batch, and a draw of n paths is the first n of any larger
draw (`nested_draws`).

Normalisation: per window and per feature (open, high, low, close, volume, amount), from the
context only, clipped to ±clip, as upstream. LoRA targets `q_proj, k_proj, v_proj, out_proj,
w1, w2, w3`; the tokenizer stays frozen; the native loss is the model's token cross-entropy
(Kronos is a token model, so it has no point losses).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from engine.forecasters.base import DrawGroup, Forecast, grid_values
from engine.forecasters.hub import ModelLoadError, loading_weights, resolve_weights, source_label
from engine.forecasters.kronos_decode import WindowStreams, generate_tokens, generate_tokens_reference
from engine.forecasters.lora import FoundationForecaster, seeded
from engine.forecasters.losses import validate_loss

HUB_ID = "NeoQuasar/Kronos-small"
TOKENIZER_ID = "NeoQuasar/Kronos-Tokenizer-base"
TINY_SEED = 20240603
TINY_TOKENIZER: dict[str, Any] = dict(d_in=6, d_model=32, n_heads=2, ff_dim=64, n_enc_layers=2, n_dec_layers=2,
                                      ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0,
                                      s1_bits=4, s2_bits=4, beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=4)
TINY_MODEL: dict[str, Any] = dict(s1_bits=4, s2_bits=4, n_layers=2, d_model=32, n_heads=2, ff_dim=64,
                                  ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0, token_dropout_p=0.0,
                                  learn_te=True)


# ---------------------------------------------------------------------------------------------
# Inputs: features and time stamps exactly as KronosPredictor builds them
# ---------------------------------------------------------------------------------------------
def window_features(context: np.ndarray, features: str = "close") -> np.ndarray:
    """`[W, C, 5]` (open, high, low, close, volume) → `[W, C, 6]` adding amount; NaN volume → 0.

    `features="close"` feeds open=high=low=close and no volume: Windows carry only the close of the
    horizon, so training sequences are close-only, and forecasting must see the same kind of input.
    """
    ctx = np.asarray(context, dtype=np.float64)
    if features == "close":
        ctx = np.concatenate([np.repeat(ctx[..., 3:4], 4, axis=-1), np.zeros_like(ctx[..., :1])], axis=-1)
    elif features != "ohlcv":
        raise ValueError(f"kronos: features must be 'close' or 'ohlcv', got {features!r}")
    ohlc = ctx[..., :4]
    vol = np.nan_to_num(ctx[..., 4], nan=0.0)
    amount = vol * ohlc.mean(axis=-1)
    return np.concatenate([ohlc, vol[..., None], amount[..., None]], axis=-1)


def time_stamps(times: np.ndarray) -> np.ndarray:
    """`[..., T]` datetime64 → `[..., T, 5]` (minute, hour, weekday, day, month) as float32."""
    t = np.asarray(times, dtype="datetime64[ns]")
    minutes = t.astype("datetime64[m]")
    days = t.astype("datetime64[D]")
    months = t.astype("datetime64[M]")
    minute = (minutes - t.astype("datetime64[h]")).astype(np.int64)
    hour = (t.astype("datetime64[h]") - days).astype(np.int64)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    day = (days - months).astype(np.int64) + 1
    month = months.astype(np.int64) % 12 + 1
    return np.stack([minute, hour, weekday, day, month], axis=-1).astype(np.float32)


def normalise(x: np.ndarray, clip: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window, per-feature standardisation from the context (upstream's +1e-5 on the std)."""
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return np.clip((x - mean) / (std + 1e-5), -clip, clip), mean, std


class KronosForecaster(FoundationForecaster):
    name = "kronos"
    patch_size = 1
    lora_targets: ClassVar[tuple[str, ...]] = ("q_proj", "k_proj", "v_proj", "out_proj", "w1", "w2", "w3")
    supported_losses: ClassVar[tuple[str, ...]] = ("native",)  # a token model: its cross-entropy only
    default_loss = "native"
    patch_sizes: ClassVar[dict[str, int]] = {"tiny": 1, "pretrained": 1}
    #: Kronos-small/base were trained on 512 tokens.
    max_window: ClassVar[int | None] = 512
    default_sources: ClassVar[tuple[str, ...]] = (HUB_ID, TOKENIZER_ID)
    #: Each path has its own random stream (WindowStreams) and rows never interact in the decoder.
    nested_draws: ClassVar[bool] = True

    @classmethod
    def default_config(cls, preset: str = "tiny") -> dict[str, Any]:
        return {"num_samples": 4 if preset == "tiny" else 10, "aggregation": "mean", "temperature": 1.0,
                "top_p": 0.9, "top_k": 0, "clip": 5.0}

    @classmethod
    def search_space(cls, *, context: int, preset: str = "tiny", full: bool = False,
                     overrides: Mapping[str, Any] | None = None) -> list[DrawGroup]:
        """Sampling settings (temperature × top-p × top-k × context cap × clip), each its own draw."""
        o, tiny = dict(overrides or {}), preset == "tiny"
        temps = grid_values(o, "temperature", [0.7, 1.0] if not full else [0.5, 0.7, 1.0, 1.2])
        top_ps = grid_values(o, "top_p", [0.9, 1.0] if not full else [0.8, 0.9, 0.95, 1.0])
        top_ks = grid_values(o, "top_k", [0] if not full else [0, 20, 50])
        ctxs = grid_values(o, "max_context", [context] if not full else sorted({max(16, context // 2), context}))
        clips = grid_values(o, "clip", [5.0] if not full else [3.0, 5.0])
        sizes = grid_values(o, "num_samples", [4, 8] if tiny and not full else [5, 10, 20, 50])
        aggs = grid_values(o, "aggregations", ["mean", "median"])
        return [DrawGroup({"temperature": t, "top_p": p, "top_k": k, "clip": cl}, c, sorted(sizes), aggs)
                for t, p, k, c, cl in itertools.product(temps, top_ps, top_ks, ctxs, clips)]

    @classmethod
    def weight_ids(cls, source: str | None = None, tokenizer: str | None = None) -> list[str]:
        """The model and (unless a -mini model brings its own) the tokenizer."""
        ids = [source or HUB_ID]
        if tokenizer or not str(ids[0]).endswith("-mini"):
            ids.append(tokenizer or TOKENIZER_ID)
        return ids

    def __init__(self, preset: str = "tiny", device: str = "cpu", source: str | None = None,
                 tokenizer: str | None = None, features: str = "close", **config: Any) -> None:
        super().__init__(preset, device, source)
        window_features(np.zeros((1, 1, 5)), features)  # validates the name before any loading
        self.features = features
        from kronos_finance._vendor.kronos_model import Kronos, KronosTokenizer

        if preset == "tiny":
            with seeded(TINY_SEED):
                self.tokenizer = KronosTokenizer(**{**TINY_TOKENIZER, **config.get("tokenizer_config", {})})
                self.model = Kronos(**{**TINY_MODEL, **config.get("model_config", {})})
            self.source = "tiny"
        elif preset == "pretrained":
            src = source or HUB_ID
            tok = tokenizer or (TOKENIZER_ID if not src.endswith("-mini") else "NeoQuasar/Kronos-Tokenizer-2k")
            mpath = resolve_weights("kronos", src, required=("config.json",))
            tpath = resolve_weights("kronos", tok, required=("config.json",))
            # huggingface_hub's mixin prints "Loading weights from local directory" on stdout for a
            # folder: stdout is the data channel of `forecast --json/--csv`, so that goes to stderr.
            with loading_weights("kronos", f"{mpath} / {tpath}"), contextlib.redirect_stdout(sys.stderr):
                self.model = Kronos.from_pretrained(str(mpath))
                self.tokenizer = KronosTokenizer.from_pretrained(str(tpath))
            self.source = source_label(src, mpath)
            self.tokenizer_source = source_label(tok, tpath)
        else:
            raise ModelLoadError(f"kronos: unknown preset {preset!r}; choose tiny or pretrained")
        self.model.to(device).eval()
        self.tokenizer.to(device).eval()
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)

    def adapt_root(self) -> Any:
        return self.model

    # ---- inputs -------------------------------------------------------------------------------
    def _tensors(self, windows: Any, clip: float, with_targets: bool) -> dict[str, Any]:
        import torch

        feats = window_features(windows.context, self.features)
        norm, mean, std = normalise(feats, clip)
        times = windows.context_time
        if with_targets:
            tgt = np.asarray(windows.targets, dtype=np.float64)
            fut = np.repeat(tgt[..., None], 6, axis=-1)  # close-only future: o=h=l=c=target
            fut[..., 4:] = 0.0  # the horizon has no volume in Windows
            fut_n = np.clip((fut - mean) / (std + 1e-5), -clip, clip)
            norm = np.concatenate([norm, fut_n], axis=1)
        stamps = time_stamps(np.concatenate([times, windows.target_time], axis=1))
        dt = next(self.tokenizer.parameters()).dtype
        return {"x": torch.tensor(norm, dtype=dt, device=self.device),
                "stamps": torch.tensor(stamps, dtype=dt, device=self.device),
                "mean": mean, "std": std}

    # ---- forecasting ---------------------------------------------------------------------------
    def forecast(self, windows: Any, num_samples: int = 1, *, seed: int = 0, temperature: float = 1.0,
                 top_k: int | None = 0, top_p: float | None = 0.9, clip: float = 5.0,
                 max_context: int | None = None, chunk_rows: int = 1024, cached: bool = True,
                 **params: Any) -> Forecast:
        """Sample paths of the close `[W, S, H]`; `max_context` defaults to context + horizon."""
        import torch

        if params:
            raise ValueError(f"kronos: unknown forecast parameter(s): {', '.join(sorted(params))}")
        if num_samples < 1 or temperature <= 0 or clip <= 0:
            raise ValueError("kronos: num_samples >= 1, temperature > 0 and clip > 0 are required")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"kronos: top_p must be in (0, 1], got {top_p}")
        t0 = time.perf_counter()
        h = int(windows.horizon)
        c = int(windows.context_len)
        mc = int(max_context or (c + h))
        w_n = windows.n
        out = np.empty((w_n, num_samples, h), dtype=np.float64)
        chunk = max(1, chunk_rows // num_samples)
        decode = generate_tokens if cached else generate_tokens_reference
        self.model.eval()
        for start in range(0, w_n, chunk):
            idx = np.arange(start, min(w_n, start + chunk))
            t = self._tensors(windows.subset(idx), clip, with_targets=False)
            with torch.no_grad():
                s1, s2 = self.tokenizer.encode(t["x"], half=True)
                rep = lambda z: z.repeat_interleave(num_samples, dim=0)  # noqa: E731 - order b0s0, b0s1, ...
                # per (window, sample), not per batch: two uniforms per step (the s1 and s2 tokens)
                streams = WindowStreams(seed, windows.origins[idx], num_samples, block=2 * h)
                g1, g2 = decode(self.model, rep(s1), rep(s2), rep(t["stamps"]), h, max_context=mc,
                                temperature=temperature, top_k=top_k, top_p=top_p, generator=streams)
                full1 = torch.cat([rep(s1), g1], dim=1)[:, -mc:]
                full2 = torch.cat([rep(s2), g2], dim=1)[:, -mc:]
                z = self.tokenizer.decode([full1, full2], half=True)[:, -h:, 3]
            close = z.double().cpu().numpy().reshape(len(idx), num_samples, h)
            out[idx] = close * (t["std"][:, :, 3:4] + 1e-5) + t["mean"][:, :, 3:4]
        return Forecast(samples=out, latency_s=time.perf_counter() - t0,
                        info={"model": self.name, "preset": self.preset, "num_samples": num_samples,
                              "temperature": temperature, "top_k": top_k, "top_p": top_p, "max_context": mc})

    # ---- training ------------------------------------------------------------------------------
    def batch_loss(self, batch: Any, loss: str, *, delta: float = 1.0, clip: float = 5.0) -> Any:
        """Teacher-forced next-token cross-entropy over context + horizon (tokens from the frozen tokenizer)."""
        import torch

        validate_loss(loss, self.supported_losses)
        t = self._tensors(batch, clip, with_targets=True)
        with torch.no_grad():
            s1, s2 = self.tokenizer.encode(t["x"], half=True)
        st = t["stamps"]
        s1_logits, s2_logits = self.model(s1[:, :-1], s2[:, :-1], st[:, :-1], use_teacher_forcing=True,
                                          s1_targets=s1[:, 1:])
        ce, _, _ = self.model.head.compute_loss(s1_logits, s2_logits, s1[:, 1:], s2[:, 1:])
        return ce
