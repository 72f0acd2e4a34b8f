"""CUDA numerics, set deliberately in one place (every foundation model on a CUDA device calls it).

Why TF32 on: training autocasts to bf16 (engine.forecasters.training), so its matmuls never see
fp32; forecasting and validation run in fp32, where TF32 tensor cores (10-bit mantissa, fp32 range)
are several times faster on Ampere and later. Forecasts are sample paths whose Monte-Carlo spread is
orders of magnitude above TF32's rounding, so the speed is worth it. `FORECAST_TF32=0` turns it off
(bit-for-bit comparisons against a CPU run, or debugging a numerical problem).
"""

from __future__ import annotations

import os

ENV_TF32 = "FORECAST_TF32"


def tf32_wanted() -> bool:
    return os.environ.get(ENV_TF32, "1").strip().lower() not in {"0", "false", "no", "off"}


def configure_cuda_matmul(allow_tf32: bool | None = None) -> bool:
    """Set torch's TF32 switches for matmul and cuDNN; returns the value set."""
    import torch

    on = tf32_wanted() if allow_tf32 is None else bool(allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on
    return on
