"""Kronos token decoding: cached autoregressive sampling that draws the same tokens as upstream.

Why our own decoder: upstream `KronosPredictor` re-runs the transformer over the whole context for
every generated token (O(H·C²) per path) and returns only the mean of its paths. `generate_tokens`
keeps a key/value cache per transformer block, so each new token costs one position, and returns
every path. It mirrors upstream step for step (same RoPE positions, same time stamps, same
top-k/top-p filtering and the same RNG draws in the same order), so for a seed it produces the same
tokens as `generate_tokens_reference`, a token-returning port of upstream's loop kept as the test
oracle. When the window must slide (`max_context` smaller than context + horizon) positions shift
under the cache, so those steps fall back to a full recompute, exactly like upstream.
`WindowStreams` gives each (window, sample) its own random stream, so a window's paths do not depend
on which windows share its batch, and a draw of n paths is the first n of any larger draw. torch is imported inside the functions: the adapter's declarations stay
torch-free.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.forecasters.base import window_seed


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
    """Per-sample random streams for batched decoding: rows are ordered window-major (w0s0, w0s1, ...,
    w1s0, ...) and row (window, j) draws its uniforms from its own generator, the j-th child
    (`SeedSequence.spawn`) of the window's seed (`window_seed(seed, origin)`).

    Why per sample: `torch.multinomial` with one generator hands out draws by row position, so a
    window's paths changed when other windows shared its batch; and one generator per window handing
    `samples` uniforms per step makes sample j's draws depend on how many samples there are. With a
    stream per (seed, origin, j), a draw of n paths is the first n paths of any larger draw
    (`Forecaster.nested_draws`). Uniforms are drawn `block` steps at a time for every row, so a
    decoding step costs a slice, not a generator call per row.
    """

    def __init__(self, seed: int, origins: Any, samples: int, block: int = 32) -> None:
        self.samples = int(samples)
        self.block = max(1, int(block))
        self.rngs = [np.random.Generator(np.random.PCG64(np.random.SeedSequence(window_seed(seed, o), spawn_key=(j,))))
                     for o in np.asarray(origins).reshape(-1) for j in range(self.samples)]
        self._buf = np.empty((len(self.rngs), 0))
        self._next = 0

    def uniforms(self, device: Any) -> Any:
        """The next uniform of every row, `[rows, 1]` float64."""
        import torch

        if self._next == self._buf.shape[1]:
            self._buf = np.stack([g.random(self.block) for g in self.rngs]) if self.rngs else self._buf
            self._next = 0
        u = self._buf[:, self._next]
        self._next += 1
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
