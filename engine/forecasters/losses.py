"""Training losses on the normalised scale (targets standardised by their window's context).

Why normalised: price levels differ by orders of magnitude across symbols and across time, so a
loss in price units would let a few expensive windows dominate; a Huber δ means the same thing
for every window when it is measured in context standard deviations.

Every loss takes tensors shaped alike (`[batch, ...]`) and returns a scalar mean. `native` is not
here: it is the model's own objective (Toto's mixture NLL, Chronos-2's quantile loss, Kronos's
token cross-entropy) and each adapter computes it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from engine.models import LOSSES

if TYPE_CHECKING:
    import torch

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class LossError(ValueError):
    """An unknown loss name, or one the chosen model cannot train with."""


def validate_loss(name: str, supported: tuple[str, ...] = LOSSES) -> str:
    n = (name or "").strip().lower()
    if n not in LOSSES:
        raise LossError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    if n not in supported:
        raise LossError(f"loss {n!r} is not available for this model; choose one of: {', '.join(supported)}")
    return n


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss; `delta` is in context standard deviations."""
    import torch

    return torch.nn.functional.huber_loss(pred, target, delta=delta, reduction="mean")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.mean((pred - target) ** 2)


def gaussian_nll(mean: torch.Tensor, var: torch.Tensor, target: torch.Tensor, min_var: float = 1e-4) -> torch.Tensor:
    """Heteroscedastic loss: Gaussian negative log-likelihood with a predicted variance per step."""
    import torch

    v = var.clamp(min=min_var)
    return torch.mean(0.5 * (torch.log(v) + (target - mean) ** 2 / v + math.log(2 * math.pi)))


def pinball(quantile_preds: torch.Tensor, target: torch.Tensor, levels: torch.Tensor | tuple[float, ...]) -> torch.Tensor:
    """Quantile (pinball) loss averaged over levels; `quantile_preds` is `[B, Q, ...]`, target `[B, ...]`."""
    import torch

    q = torch.as_tensor(levels, dtype=quantile_preds.dtype, device=quantile_preds.device)
    q = q.view(1, -1, *([1] * (quantile_preds.dim() - 2)))
    diff = target.unsqueeze(1) - quantile_preds
    return torch.mean(torch.maximum(q * diff, (q - 1) * diff))


def point_loss(name: str, pred: torch.Tensor, target: torch.Tensor, *, delta: float = 1.0) -> torch.Tensor:
    """The losses that need only a point prediction (huber, mse)."""
    if name == "huber":
        return huber(pred, target, delta)
    if name == "mse":
        return mse(pred, target)
    raise LossError(f"{name!r} is not a point loss")
