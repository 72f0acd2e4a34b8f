"""Kronos (NeoQuasar; model code vendored in `kronos_finance._vendor.kronos_model`) as a Forecaster.

Why our own decoder: upstream `KronosPredictor` re-runs the transformer over the whole context for
every generated token (O(H·C²) per path) and returns only the mean of its paths. `generate_tokens`
keeps a key/value cache per transformer block, so each new token costs one position, and returns
every path. It mirrors upstream step for step — same RoPE positions, same time stamps, same
top-k/top-p filtering and the same RNG draws in the same order — so for a seed it produces the
same tokens as `generate_tokens_reference` (a token-returning port of upstream's loop).
`forecast` draws each window's tokens from its own stream (`WindowStreams`, seeded from seed +
origin), so a window's paths do not depend on which windows share its batch. When the
window must slide (`max_context` smaller than context + horizon) positions shift under the cache,
so those steps fall back to a full recompute, exactly like upstream.

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

from engine.forecasters.base import DrawGroup, Forecast, grid_values, window_rngs
from engine.forecasters.hub import ModelLoadError, resolve_weights, source_label
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


# ---------------------------------------------------------------------------------------------
# Sampling and decoding
# ---------------------------------------------------------------------------------------------
def filter_logits(logits: Any, top_k: int | None, top_p: float | None) -> Any:
    """Upstream's top-k / nucleus filtering (top-k, when set, wins; top-p is then ignored)."""
    import torch
    import torch.nn.functional as F

    k = int(top_k or 0)
    p = 1.0 if top_p is None else float(top_p)
    if k > 0:
        k = min(k, logits.size(-1))
        return logits.masked_fill(logits < torch.topk(logits, k)[0][..., -1, None], float("-inf"))
    if p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True)
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        mask = remove.scatter(1, sorted_idx, remove)
        return logits.masked_fill(mask, float("-inf"))
    return logits


class WindowStreams:
    """Per-window random streams for batched decoding: rows are ordered window-major (w0s0, w0s1, ...,
    w1s0, ...), and each decoding step draws `samples` uniforms from each window's own generator.

    Why: `torch.multinomial` with one generator hands out draws by row position, so a window's paths
    changed when other windows shared its batch. Here a window's draws depend on (seed, origin) only.
    """

    def __init__(self, seed: int, origins: Any, samples: int) -> None:
        self.rngs = window_rngs(seed, origins)
        self.samples = int(samples)

    def uniforms(self, device: Any) -> Any:
        import torch

        u = np.concatenate([g.random(self.samples) for g in self.rngs])
        return torch.as_tensor(u, dtype=torch.float64, device=device)[:, None]


def sample_token(logits: Any, temperature: float, top_k: int | None, top_p: float | None,
                 generator: Any | None, greedy: bool = False) -> Any:
    """One token id per row; `generator=None` draws from torch's global RNG (as upstream does), a
    `WindowStreams` by inverse CDF from each window's own uniforms."""
    import torch
    import torch.nn.functional as F

    if greedy:
        return torch.argmax(logits, dim=-1, keepdim=True)
    probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
    if isinstance(generator, WindowStreams):
        cdf = torch.cumsum(probs.double(), dim=-1)
        u = generator.uniforms(probs.device) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=probs.shape[-1] - 1)
    return torch.multinomial(probs, 1, generator=generator)


def _rope(attn: Any, x: Any, start: int) -> tuple[Any, Any]:
    """cos/sin of positions start..start+T-1, computed the way upstream's rotary module does."""
    import torch

    inv = attn.rotary.inv_freq
    t = torch.arange(start + x.shape[-2], device=x.device).type_as(inv)[start:]
    emb = torch.cat([torch.einsum("i,j->ij", t, inv)] * 2, dim=-1).to(x.device)
    return emb.cos()[None, None], emb.sin()[None, None]


def _rot_half(x: Any) -> Any:
    import torch

    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _attn_cached(attn: Any, x: Any, cache: list[Any], start: int) -> Any:
    """Self-attention of new positions `start..` against cached keys/values (cache updated in place)."""
    import torch
    import torch.nn.functional as F

    b, t, _ = x.shape
    h, hd = attn.n_heads, attn.head_dim
    q = attn.q_proj(x).view(b, t, h, hd).transpose(1, 2)
    k = attn.k_proj(x).view(b, t, h, hd).transpose(1, 2)
    v = attn.v_proj(x).view(b, t, h, hd).transpose(1, 2)
    cos, sin = _rope(attn, q, start)
    q = q * cos + _rot_half(q) * sin
    k = k * cos + _rot_half(k) * sin
    if cache:
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
    cache[:] = [k, v]
    out = F.scaled_dot_product_attention(q, k, v, is_causal=(t > 1))  # one new query sees every key
    out = out.transpose(1, 2).contiguous().view(b, t, attn.d_model)
    return attn.resid_dropout(attn.out_proj(out))


def _forward_cached(model: Any, s1: Any, s2: Any, stamp: Any, caches: list[list[Any]], start: int) -> Any:
    """Kronos.decode_s1's trunk for new positions, reusing and extending the per-block caches."""
    x = model.embedding([s1, s2])
    x = x + model.time_emb(stamp)
    x = model.token_drop(x)
    for layer, cache in zip(model.transformer, caches, strict=True):
        x = x + _attn_cached(layer.self_attn, layer.norm1(x), cache, start)
        x = x + layer.ffn(layer.norm2(x))
    return model.norm(x)


def generate_tokens(model: Any, s1: Any, s2: Any, stamps: Any, pred_len: int, *, max_context: int,
                    temperature: float = 1.0, top_k: int | None = 0, top_p: float | None = 0.99,
                    generator: Any | None = None, greedy: bool = False) -> tuple[Any, Any]:
    """Cached autoregressive decoding. `s1, s2` `[B, L]` context tokens, `stamps` `[B, L+H, 5]`.

    Returns the generated `(s1, s2)` ids `[B, H]`.
    """
    import torch

    b, n0 = s1.shape
    gen1 = s1.new_empty(b, pred_len)
    gen2 = s2.new_empty(b, pred_len)
    all1, all2 = s1, s2
    caches: list[list[Any]] = []
    hidden = None
    with torch.no_grad():
        for i in range(pred_len):
            cur = n0 + i
            if cur > max_context or hidden is None:
                # (re)build the window: first step, or the window slid and positions changed
                lo = max(0, cur - max_context)
                caches = [[] for _ in model.transformer]
                hidden = _forward_cached(model, all1[:, lo:cur], all2[:, lo:cur], stamps[:, lo:cur], caches, 0)
            s1_logits = model.head(hidden[:, -1:, :])[:, -1, :]
            nxt1 = sample_token(s1_logits, temperature, top_k, top_p, generator, greedy)
            s2_logits = model.decode_s2(hidden, nxt1)[:, -1, :]
            nxt2 = sample_token(s2_logits, temperature, top_k, top_p, generator, greedy)
            gen1[:, i] = nxt1[:, 0]
            gen2[:, i] = nxt2[:, 0]
            all1 = torch.cat([all1, nxt1], dim=1)
            all2 = torch.cat([all2, nxt2], dim=1)
            if i + 1 < pred_len and cur + 1 <= max_context:
                new = _forward_cached(model, nxt1, nxt2, stamps[:, cur:cur + 1], caches, cur)
                hidden = torch.cat([hidden, new], dim=1)
    return gen1, gen2


def generate_tokens_reference(model: Any, s1: Any, s2: Any, stamps: Any, pred_len: int, *, max_context: int,
                              temperature: float = 1.0, top_k: int | None = 0, top_p: float | None = 0.99,
                              generator: Any | None = None, greedy: bool = False) -> tuple[Any, Any]:
    """Upstream's uncached loop (`auto_regressive_inference`), returning tokens: the test oracle."""
    import torch

    b, n0 = s1.shape
    gen1 = s1.new_empty(b, pred_len)
    gen2 = s2.new_empty(b, pred_len)
    all1, all2 = s1, s2
    with torch.no_grad():
        for i in range(pred_len):
            cur = n0 + i
            lo = max(0, cur - max_context)
            s1_logits, ctx = model.decode_s1(all1[:, lo:cur], all2[:, lo:cur], stamps[:, lo:cur].contiguous())
            nxt1 = sample_token(s1_logits[:, -1, :], temperature, top_k, top_p, generator, greedy)
            nxt2 = sample_token(model.decode_s2(ctx, nxt1)[:, -1, :], temperature, top_k, top_p, generator, greedy)
            gen1[:, i] = nxt1[:, 0]
            gen2[:, i] = nxt2[:, 0]
            all1 = torch.cat([all1, nxt1], dim=1)
            all2 = torch.cat([all2, nxt2], dim=1)
    return gen1, gen2


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
            try:
                # huggingface_hub's mixin prints "Loading weights from local directory" on stdout for a
                # folder: stdout is the data channel of `forecast --json/--csv`, so that goes to stderr.
                with contextlib.redirect_stdout(sys.stderr):
                    self.model = Kronos.from_pretrained(str(mpath))
                    self.tokenizer = KronosTokenizer.from_pretrained(str(tpath))
            except (OSError, ValueError, RuntimeError, KeyError, TypeError, AssertionError) as exc:
                raise ModelLoadError(f"kronos: cannot load weights from {mpath} / {tpath}: {exc}") from exc
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
                streams = WindowStreams(seed, windows.origins[idx], num_samples)  # per window, not per batch
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
