"""`bench/gpu_check.sh` on a machine without CUDA: says so and exits 0 (its GPU branch needs a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda_says_no_cuda_device_and_exits_0() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--quick"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "no CUDA device", r.stdout


def test_gpu_check_table_and_smi_helpers_work_without_a_gpu(monkeypatch) -> None:  # noqa: ANN001
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    monkeypatch.setattr(gpu_check, "ROWS", [])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert gpu_check.smi("index,memory.used") == []  # no nvidia-smi: no rows, no exception
    gpu_check.row("vram", "toto train bf16 GiB", "measured 3.10", "estimated 1.43")
    w = gpu_check.windows(64, 16, 8)
    assert w.n >= 8 and w.context_len == 64 and w.horizon == 16
