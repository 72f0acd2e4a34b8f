"""Shared machinery of the foundation-model adapters: LoRA/full fine-tuning and adapter files.

Why one base class: the three models differ in how they see a window (patches, quantiles, tokens)
but not in how their weights are adapted, saved and restored. Keeping that in one place means an
adapter trained by `train` loads identically in `validate`/`compare` for every model.

Adapter directory layout (written by `save_adapter`, read by `load_adapter` and by
`registry.load_forecaster(model, preset, adapter=path)`):

    adapter_meta.json      {model, preset, source, [tokenizer,] finetune: "lora"|"full", lora: {...}, format: 1}
                           (`source`: the base weights' hub id or absolute directory)
    adapter.safetensors    the trainable tensors (LoRA A/B matrices, or the whole module for "full"),
                           keyed by their names inside the adapted module
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engine.forecasters.base import Forecaster

if TYPE_CHECKING:
    import torch

ADAPTER_META = "adapter_meta.json"
ADAPTER_WEIGHTS = "adapter.safetensors"
FINETUNE_MODES: tuple[str, ...] = ("lora", "full")


class AdapterError(ValueError):
    """An adapter directory that does not match the model it is loaded into."""


def seeded(seed: int) -> Any:
    """A context manager that seeds torch's global RNG and restores it afterwards.

    Model constructors and LoRA's initialisation (lora_inject's, or peft's) draw from the global RNG;
    forking it keeps every `tiny` load (and every adapter init) identical without disturbing the
    caller's stream.
    """
    import torch

    class _Ctx:
        def __enter__(self) -> None:
            self._fork = torch.random.fork_rng(devices=[])
            self._fork.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc: Any) -> None:
            self._fork.__exit__(*exc)

    return _Ctx()


class FoundationForecaster(Forecaster):
    """A torch model with a module to adapt (`adapt_root`) and a per-batch training loss."""

    lora_targets: ClassVar[tuple[str, ...]] = ()
    trainable: ClassVar[bool] = True
    #: The loss used when the caller does not pick one.
    default_loss: ClassVar[str] = "native"

    def __init__(self, preset: str, device: str = "cpu", source: str | None = None) -> None:
        self.preset = preset
        self.device = device
        self.source = source or preset
        #: The tokenizer's hub id or directory, for models that load one (Kronos); adapters record it.
        self.tokenizer_source: str | None = None
        self.finetune: str | None = None
        if str(device).startswith("cuda"):
            from engine.forecasters.device import configure_cuda_matmul

            configure_cuda_matmul()
        self.lora: dict[str, Any] | None = None
        #: A LoRA applied with engine.forecasters.lora_inject (by `prepare_finetune` or a loaded adapter),
        #: which `use_adapter` can take off again: (wrapped module names, requires_grad before).
        self._injected: tuple[list[str], dict[str, bool]] | None = None
        #: `adapter_identity` of the adapter `use_adapter` applied.
        self._adapter_id: tuple[str, tuple[tuple[str, int, int], ...]] | None = None

    # ---- to implement -------------------------------------------------------------------------
    def adapt_root(self) -> torch.nn.Module:  # pragma: no cover - abstract
        """The module LoRA wraps / full fine-tuning updates (e.g. Toto's backbone)."""
        raise NotImplementedError

    def batch_loss(self, batch: Any, loss: str, *, delta: float = 1.0) -> torch.Tensor:  # pragma: no cover
        """Mean loss over a Windows batch, on the context-normalised scale."""
        raise NotImplementedError

    # ---- fine-tuning ----------------------------------------------------------------------------
    def prepare_finetune(self, mode: str = "lora", *, rank: int = 8, alpha: float | None = None,
                         dropout: float = 0.0, seed: int = 0, targets: tuple[str, ...] | None = None) -> None:
        """Make the model trainable: inject LoRA (frozen base) or unfreeze everything."""
        if self.finetune is not None:
            raise AdapterError(f"{self.name} is already prepared for {self.finetune} fine-tuning")
        if mode not in FINETUNE_MODES:
            raise AdapterError(f"finetune must be one of {', '.join(FINETUNE_MODES)}, got {mode!r}")
        root = self.adapt_root()
        if mode == "full":
            for p in root.parameters():
                p.requires_grad_(True)
            self.finetune = "full"
            return
        if not isinstance(rank, int) or rank < 1:
            raise AdapterError(f"lora_rank must be a positive integer, got {rank!r}")
        tgt = list(targets or self.lora_targets)
        if alpha is not None and (isinstance(alpha, bool) or float(alpha) != int(alpha) or alpha < 1):
            raise AdapterError(f"lora alpha must be a positive whole number (peft's LoraConfig), got {alpha!r}")
        lora_alpha = int(alpha) if alpha is not None else 2 * rank
        from engine.forecasters.lora_inject import lora_target_names

        names = lora_target_names(root, tgt)
        if names == []:
            raise AdapterError(f"lora targets {tgt} match no module of {self.name}'s {type(root).__name__}")
        if names is not None:  # plain linears: peft's LoRA without importing peft (lora_inject)
            self._wrap_linears(names, rank=rank, alpha=lora_alpha, dropout=float(dropout), seed=seed)
        else:  # a target peft has another layer for
            from peft import LoraConfig, inject_adapter_in_model

            for p in root.parameters():
                p.requires_grad_(False)
            cfg = LoraConfig(r=rank, lora_alpha=lora_alpha, lora_dropout=float(dropout), target_modules=tgt)
            with seeded(seed):
                inject_adapter_in_model(cfg, root)
            self._lora_trainable()
        self.lora = {"rank": rank, "alpha": lora_alpha, "dropout": float(dropout), "targets": tgt, "seed": seed}

    def _wrap_linears(self, names: list[str], *, rank: int, alpha: float, dropout: float, seed: int) -> bool:
        """Wrap the named plain linears of `adapt_root` in lora_inject's LoraLinear (peft's init, drawn
        under `seed` without moving the caller's RNG); frozen base, trainable LoRA, and removable again
        (`use_adapter`). False, nothing changed, when one is missing or not a plain linear."""
        from engine.forecasters.lora_inject import inject_lora

        root = self.adapt_root()
        grads = {n: p.requires_grad for n, p in root.named_parameters()}
        with seeded(seed):
            if not inject_lora(root, names, rank=rank, alpha=alpha, dropout=dropout):
                return False
        self._injected = (names, grads)
        self._lora_trainable()
        return True

    def _lora_trainable(self) -> None:
        """After injection: frozen base, trainable LoRA, on the model's device."""
        root = self.adapt_root()
        for n, p in root.named_parameters():
            p.requires_grad_("lora_" in n)
        root.to(self.device)
        self.finetune = "lora"

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.adapt_root().parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Copies of the tensors an adapter file holds (LoRA matrices, or everything for full)."""
        root = self.adapt_root()
        if self.finetune == "full":
            return {k: v.detach().cpu().clone().contiguous() for k, v in root.state_dict().items()}
        return {n: p.detach().cpu().clone().contiguous() for n, p in root.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        root = self.adapt_root()
        if self.finetune == "full":
            root.load_state_dict(state, strict=True)
            return
        params = dict(root.named_parameters())
        unknown = [k for k in state if k not in params]
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        if unknown or missing:
            raise AdapterError(f"adapter does not fit this {self.name} model: unknown {unknown[:3]}, missing {missing[:3]}")
        import torch

        with torch.no_grad():
            for k, v in state.items():
                params[k].copy_(v.to(params[k].device, params[k].dtype))

    def set_train_mode(self, training: bool) -> None:
        self.adapt_root().train(training)

    # ---- adapter files ---------------------------------------------------------------------------
    def save_adapter(self, path: Path) -> None:
        """Write the adapter directory (see module docstring); atomic per file."""
        if self.finetune is None:
            raise AdapterError(f"{self.name} has not been fine-tuned; there is no adapter to save")
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / (ADAPTER_WEIGHTS + ".tmp")
        save_file(self.trainable_state(), str(tmp))
        tmp.replace(path / ADAPTER_WEIGHTS)
        meta = {"format": 1, "model": self.name, "preset": self.preset, "source": self.source,
                "finetune": self.finetune, "lora": self.lora}
        if self.tokenizer_source:
            meta["tokenizer"] = self.tokenizer_source
        tmpm = path / (ADAPTER_META + ".tmp")
        tmpm.write_text(json.dumps(meta, indent=2))
        tmpm.replace(path / ADAPTER_META)

    def _inject_saved_lora(self, state: dict[str, torch.Tensor], lo: dict[str, Any]) -> bool:
        """Wrap the modules a saved LoRA state names, as `prepare_finetune` would have (frozen base,
        trainable LoRA); False when the state is not plain LoRA on linears (then peft injects)."""
        from engine.forecasters.lora_inject import lora_module_names

        names = lora_module_names(state)
        if names is None:
            return False
        rank = int(lo.get("rank", 8))
        alpha = float(lo["alpha"]) if lo.get("alpha") is not None else float(2 * rank)
        if not self._wrap_linears(names, rank=rank, alpha=alpha, dropout=float(lo.get("dropout", 0.0)),
                                  seed=int(lo.get("seed", 0))):
            return False
        self.lora = {"rank": rank, "alpha": alpha, "dropout": float(lo.get("dropout", 0.0)),
                     "targets": list(lo.get("targets") or self.lora_targets), "seed": int(lo.get("seed", 0))}
        return True

    def load_adapter(self, path: Path) -> None:
        """Apply an adapter written by `save_adapter` (same model; LoRA is injected as recorded)."""
        meta = read_adapter_meta(path)
        if meta.get("model") != self.name:
            raise AdapterError(f"adapter {path} is for model {meta.get('model')!r}, not {self.name!r}")
        from safetensors.torch import load_file

        state = load_file(str(Path(path) / ADAPTER_WEIGHTS))
        lo = meta.get("lora") or {}
        if self.finetune is None and meta["finetune"] == "lora" and self._inject_saved_lora(state, lo):
            pass  # plain LoRA on linears: applied without importing peft (engine.forecasters.lora_inject)
        elif self.finetune is None:
            self.prepare_finetune(meta["finetune"], rank=int(lo.get("rank", 8)), alpha=lo.get("alpha"),
                                  dropout=float(lo.get("dropout", 0.0)), seed=int(lo.get("seed", 0)),
                                  targets=tuple(lo["targets"]) if lo.get("targets") else None)
        self.load_trainable_state(state)
        self.set_train_mode(False)


    def use_adapter(self, path: Path | None) -> bool:
        """Make this model carry exactly the adapter at `path` (None: the base weights), for a model a
        warm worker's cache shares between jobs (engine.forecasters.cache).

        The adapter already on it is kept when its files are the same (path, sizes, mtimes); else it
        is taken off (a plain LoRA, loaded or trained here, wraps the base linears without changing
        them, so unwrapping gives the base back, requires_grad flags included) and `path`'s is
        applied. False when the model can no longer be the shared base: its adapter was a full
        fine-tune or went through peft, which rewrite the modules; it then carries `path`'s adapter
        for this job and the caller must not keep it."""
        want = adapter_identity(path) if path is not None else None
        if (want is not None and self._adapter_id == want) or (want is None and self.finetune is None):
            return True
        if self.finetune is not None:
            if self._injected is None:
                return False  # not removable (never kept by the cache after such a load)
            from engine.forecasters.lora_inject import remove_lora

            names, grads = self._injected
            root = self.adapt_root()
            remove_lora(root, names)
            for n, p in root.named_parameters():
                p.requires_grad_(grads.get(n, p.requires_grad))
            self.finetune, self.lora, self._injected, self._adapter_id = None, None, None, None
        if path is None:
            return True
        self.load_adapter(path)
        if self._injected is None:
            return False
        self._adapter_id = want
        return True


def adapter_identity(path: Path) -> tuple[str, tuple[tuple[str, int, int], ...]]:
    """What makes two loads the same adapter: its folder and each file's name, size and mtime."""
    p = Path(path).resolve()
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else []
    return str(p), tuple((f.name, (st := f.stat()).st_size, st.st_mtime_ns) for f in files)


def read_adapter_meta(path: Path) -> dict[str, Any]:
    """The adapter's metadata, with a clear error when the directory is not an adapter."""
    p = Path(path)
    if not (p / ADAPTER_META).is_file() or not (p / ADAPTER_WEIGHTS).is_file():
        raise AdapterError(f"{p} is not an adapter directory (needs {ADAPTER_META} and {ADAPTER_WEIGHTS})")
    try:
        meta = json.loads((p / ADAPTER_META).read_text())
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{p / ADAPTER_META} is not valid JSON: {exc}") from None
    if meta.get("finetune") not in FINETUNE_MODES:
        raise AdapterError(f"{p / ADAPTER_META}: finetune must be one of {FINETUNE_MODES}")
    return meta
