"""Real-size checkpoints with random weights, written in the on-disk layout each package loads.

Why: pretrained weights cannot be downloaded everywhere (CI, air-gapped boxes), yet the path users
run — `--preset pretrained --source DIR`, real-size models, LoRA on top, bf16 on a GPU — must be
exercised. These configurations are the published ones of the default hub ids (Toto-Open-Base-1.0
≈151M, Chronos-2 ≈120M, Kronos-small ≈25M + Kronos-Tokenizer-base ≈4M); a directory written here
loads through exactly the code that loads a downloaded snapshot (`Toto.load_from_checkpoint`,
`Chronos2Model.from_pretrained`, `Kronos/KronosTokenizer.from_pretrained`). The numbers they
forecast are meaningless; the shapes, memory and speed are those of the real models.

Used by the pretrained-from-folder tests and by `bench/gpu_check.py`; `write_random_adapter` by the
decision tests and `bench/bench_forecast.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Datadog/Toto-Open-Base-1.0 config.json (xformers attention is switched off by the loader when absent).
TOTO_CONFIG: dict[str, Any] = dict(
    patch_size=64, stride=64, embed_dim=768, num_layers=12, num_heads=12, mlp_hidden_dim=3072, dropout=0.1,
    spacewise_every_n_layers=12, scaler_cls="<class 'model.scaler.CausalPatchStdMeanScaler'>",
    output_distribution_classes=["<class 'model.distribution.MixtureOfStudentTsOutput'>"],
    output_distribution_kwargs={"k_components": 24}, spacewise_first=True, use_memory_efficient_attention=True,
    stabilize_with_global=True, scale_factor_exponent=10.0,
)
#: amazon/chronos-2: a 12-layer T5-style encoder, 21 quantiles, context 8192, 16-step patches.
CHRONOS2_QUANTILES: list[float] = [0.01, 0.05] + [round(0.05 * i, 2) for i in range(2, 19)] + [0.95, 0.99]
CHRONOS2_CORE: dict[str, Any] = dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12, dropout_rate=0.1,
                                     feed_forward_proj="relu", attn_implementation="sdpa")
CHRONOS2_CONFIG: dict[str, Any] = dict(context_length=8192, input_patch_size=16, input_patch_stride=16,
                                       output_patch_size=16, quantiles=CHRONOS2_QUANTILES, use_reg_token=True,
                                       use_arcsinh=True, max_output_patches=64, time_encoding_scale=8192)
#: NeoQuasar/Kronos-small and NeoQuasar/Kronos-Tokenizer-base config.json.
KRONOS_MODEL: dict[str, Any] = dict(s1_bits=10, s2_bits=10, n_layers=8, d_model=512, n_heads=8, ff_dim=1024,
                                    ffn_dropout_p=0.25, attn_dropout_p=0.0, resid_dropout_p=0.25, token_dropout_p=0.1,
                                    learn_te=True)
KRONOS_TOKENIZER: dict[str, Any] = dict(d_in=6, d_model=256, n_heads=4, ff_dim=512, n_enc_layers=4, n_dec_layers=4,
                                        ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0, s1_bits=10,
                                        s2_bits=10, beta=0.05, gamma0=1.0, gamma=1.1, zeta=0.05, group_size=4)
#: The folder names `write_checkpoint` uses under its root (Kronos needs two).
KRONOS_TOKENIZER_DIR = "tokenizer"


def _seeded(seed: int) -> Any:
    from engine.forecasters.lora import seeded

    return seeded(seed)


def write_toto(path: Path, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """`config.json` + `model.safetensors` as Datadog publishes them (`config`: another architecture
    in the same layout, e.g. the tiny one, for a small weights folder)."""
    from safetensors.torch import save_file

    from engine.forecasters.toto import _import_toto

    Toto = _import_toto()  # noqa: N806 - the class

    cfg = dict(config or TOTO_CONFIG)
    with _seeded(seed):
        model = Toto(**{**cfg, "use_memory_efficient_attention": False})
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("rotary_emb.freqs")}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    return path


def write_chronos2(path: Path, seed: int = 0) -> Path:
    """A `save_pretrained` directory of Chronos2Model (`config.json` + `model.safetensors`)."""
    from chronos.chronos2 import Chronos2CoreConfig, Chronos2Model

    cfg = Chronos2CoreConfig(**CHRONOS2_CORE, chronos_config=dict(CHRONOS2_CONFIG))
    cfg.architectures = ["Chronos2Model"]
    cfg.chronos_pipeline_class = "Chronos2Pipeline"
    with _seeded(seed):
        model = Chronos2Model(cfg)
    model.save_pretrained(str(path))
    return path


def write_kronos(path: Path, seed: int = 0) -> tuple[Path, Path]:
    """Kronos-small at `path`, its tokenizer at `path/tokenizer` (both `PyTorchModelHubMixin` layouts)."""
    from kronos_finance._vendor.kronos_model import Kronos, KronosTokenizer

    with _seeded(seed):
        tok = KronosTokenizer(**KRONOS_TOKENIZER)
        model = Kronos(**KRONOS_MODEL)
    tdir = path / KRONOS_TOKENIZER_DIR
    model.save_pretrained(str(path))
    tok.save_pretrained(str(tdir))
    return path, tdir


WRITERS: dict[str, Callable[[Path, int], Path | tuple[Path, Path]]] = {"toto": write_toto, "chronos2": write_chronos2, "kronos": write_kronos}


def write_checkpoint(model: str, path: Path, seed: int = 0) -> dict[str, str]:
    """Write `model`'s real-size random checkpoint under `path`; the `source`/`tokenizer` params to load it."""
    if model not in WRITERS:
        raise ValueError(f"no real-size checkpoint writer for {model!r}; choose one of: {', '.join(WRITERS)}")
    out = WRITERS[model](Path(path), seed)
    if isinstance(out, tuple):  # kronos: the model and its tokenizer
        return {"source": str(out[0]), "tokenizer": str(out[1])}
    return {"source": str(out)}


def write_random_adapter(model: str, path: Path, preset: str = "tiny", *, rank: int = 2, seed: int = 1,
                         scale: float = 0.05) -> Path:
    """A LoRA adapter folder for `model` whose LoRA matrices are random and non-zero (written by the
    adapter code, so it loads like a trained one and changes the forecasts)."""
    import torch

    from engine.forecasters.lora import FoundationForecaster
    from engine.forecasters.registry import load_forecaster

    fc = load_forecaster(model, preset)
    if not isinstance(fc, FoundationForecaster):
        raise ValueError(f"{model} has no LoRA adapter to write (not a foundation model)")
    fc.prepare_finetune("lora", rank=rank, seed=seed)
    g = torch.Generator().manual_seed(seed + 6)
    with torch.no_grad():
        for p in fc.trainable_parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    fc.save_adapter(Path(path))
    return Path(path)


def parameter_count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())
