"""LoRA on plain linears, for training and for loading an adapter, without importing peft.

Why: importing peft imports transformers (and through it torch.distributed, scipy.optimize,
sympy): ~5.7 s of CPU in every fresh worker that trains or loads an adapter
(bench/bench_train_start.py), to run a few matrix products. peft stays the fallback for what this
module does not cover: a target that is not a plain `nn.Linear` (peft has its own layers for those).

Bit-identical to peft's vanilla LoRA (peft's `inject_adapter_in_model` with a list of
`target_modules`), so a seed reproduces a peft-trained run and adapters peft trained load unchanged:
  * which modules (`lora_target_names`): peft's rule for a list of targets
    (`tuners_utils.check_target_module_exists`): a module whose full name equals a target or ends
    with "." + target, the root itself never, wrapped in `named_modules()` order;
  * the layout: `base_layer`, `lora_dropout.default`, `lora_A.default`, `lora_B.default`, so
    parameter and adapter-file tensor names are peft's;
  * the init, draw for draw: `nn.Linear(in, r)` then `nn.Linear(r, out)` (each constructor draws),
    then A re-drawn with `kaiming_uniform_(a=sqrt(5))` and B zeroed, then both moved to the base
    weight's device and (floating) dtype;
  * the forward, operation for operation: `base(x) + B(A(dropout(x))) * (alpha / r)`, the input cast
    to A's dtype and the sum back to the base output's dtype.
tests/test_forecasters_models.py::test_lora_inject_is_bit_identical_to_peft checks all of it against
peft on the three models (names, flags, initial tensors, tensors and output after optimizer steps
with and without dropout, a peft-trained adapter loaded here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def lora_target_names(root: torch.nn.Module, targets: Sequence[str]) -> list[str] | None:
    """The modules of `root` peft would wrap for `target_modules=list(targets)`, in its order, when
    every one is a plain `nn.Linear` ([] when none matches); None when one is another kind of module
    (a subclass of Linear included: peft decides what wraps it)."""
    from torch import nn

    want = set(targets)
    suffixes = tuple("." + t for t in want)
    hits = [(k, m) for k, m in root.named_modules() if k and (k in want or k.endswith(suffixes))]
    if any(type(m) is not nn.Linear for _, m in hits):
        return None
    return [k for k, _ in hits]


def _lora_linear_class() -> type:
    from torch import nn

    class LoraLinear(nn.Module):
        """peft's `lora.Linear` for one adapter, unmerged, no DoRA/bias variants (see the module docstring)."""

        def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
            super().__init__()
            self.base_layer = base
            self.lora_dropout = nn.ModuleDict({ADAPTER_NAME: nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()})
            self.lora_A = nn.ModuleDict({ADAPTER_NAME: nn.Linear(base.in_features, rank, bias=False)})
            self.lora_B = nn.ModuleDict({ADAPTER_NAME: nn.Linear(rank, base.out_features, bias=False)})
            nn.init.kaiming_uniform_(self.lora_A[ADAPTER_NAME].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[ADAPTER_NAME].weight)
            self.scaling = alpha / rank
            w = base.weight
            dtype = w.dtype if w.dtype.is_floating_point or w.dtype.is_complex else None
            for d in (self.lora_dropout, self.lora_A, self.lora_B):
                d[ADAPTER_NAME].to(w.device, dtype=dtype)

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
    """Wrap each named `nn.Linear` of `root` in a LoraLinear, in the order given (the order of the
    init draws); False (nothing changed) when one of them is missing or not a plain linear."""
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
