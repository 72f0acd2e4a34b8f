"""Apply a saved LoRA adapter without importing peft.

Why: importing peft imports transformers (and through it torch.distributed, scipy.optimize,
sympy): ~4 s of a 5 s budget for `forecast-console forecast` on a tiny model, to run a few
matrix products. Loading an adapter for inference needs none of it. `LoraLinear` keeps peft's
module layout (`base_layer`, `lora_A.default`, `lora_B.default`, `lora_dropout.default`), so the
adapter file's tensor names fit unchanged, and its forward is peft's vanilla-LoRA forward operation
for operation (`base(x) + B(A(dropout(x))) * (alpha / r)`), so a loaded adapter forecasts the same
floats as the peft-wrapped model it was trained as (tests/test_lora_inject.py checks bit equality).
Training still injects with peft (`FoundationForecaster.prepare_finetune`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

ADAPTER_NAME = "default"  # peft's default adapter name, part of every saved tensor name
_A, _B = f".lora_A.{ADAPTER_NAME}.weight", f".lora_B.{ADAPTER_NAME}.weight"


def lora_module_names(state: Mapping[str, Any]) -> list[str] | None:
    """The names of the modules a LoRA state wraps, or None when it is not plain LoRA on linears
    (then the caller injects with peft)."""
    a = sorted(k[: -len(_A)] for k in state if k.endswith(_A))
    b = sorted(k[: -len(_B)] for k in state if k.endswith(_B))
    if not a or a != b or len(state) != 2 * len(a):
        return None
    return a


def _lora_linear_class() -> type:
    from torch import nn

    class LoraLinear(nn.Module):
        """peft's `lora.Linear` forward for one adapter, unmerged, no DoRA/bias variants."""

        def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
            super().__init__()
            self.base_layer = base
            self.lora_A = nn.ModuleDict({ADAPTER_NAME: nn.Linear(base.in_features, rank, bias=False)})
            self.lora_B = nn.ModuleDict({ADAPTER_NAME: nn.Linear(rank, base.out_features, bias=False)})
            self.lora_dropout = nn.ModuleDict({ADAPTER_NAME: nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()})
            self.scaling = alpha / rank
            self.to(base.weight.device)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            result = self.base_layer(x)
            dtype = result.dtype
            a = self.lora_A[ADAPTER_NAME]
            if x.dtype != a.weight.dtype:
                x = x.to(a.weight.dtype)
            result = result + self.lora_B[ADAPTER_NAME](a(self.lora_dropout[ADAPTER_NAME](x))) * self.scaling
            return result.to(dtype)

    return LoraLinear


def inject_lora(root: torch.nn.Module, names: list[str], *, rank: int, alpha: float, dropout: float) -> bool:
    """Wrap each named `nn.Linear` of `root` in a LoraLinear; False (nothing changed) when one of them
    is missing or not a plain linear."""
    from torch import nn

    mods = dict(root.named_modules())
    if any(type(mods.get(n)) is not nn.Linear for n in names):
        return False
    cls = _lora_linear_class()
    for n in names:
        parent_name, _, child = n.rpartition(".")
        parent = mods[parent_name] if parent_name else root
        setattr(parent, child, cls(mods[n], rank, alpha, dropout))
    return True


def remove_lora(root: torch.nn.Module, names: list[str]) -> None:
    """Undo `inject_lora`: each named LoraLinear is replaced by the linear it wraps (whose weights it
    never changed), so the module is the base model again."""
    mods = dict(root.named_modules())
    for n in names:
        wrapper = mods.get(n)
        base = getattr(wrapper, "base_layer", None)
        if base is None:
            raise ValueError(f"{n} carries no LoRA wrapper to remove")
        parent_name, _, child = n.rpartition(".")
        setattr(mods[parent_name] if parent_name else root, child, base)
