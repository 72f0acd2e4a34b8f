"""GPU check: the figures to look at on a CUDA machine before trusting the console with real work.

    bench/gpu_check.sh            # or: python bench/gpu_check.py [--quick] [--steps 20]

On a machine without CUDA it prints "no CUDA device" and exits 0. On a CUDA machine (this repo set
up with `./setup.sh`; no downloaded weights needed: real-size checkpoints with random weights are
written by engine.forecasters.realsize) it prints one table, in sections:

1. NVML (engine.gpu.NvmlSource) vs `nvidia-smi --query-gpu` / `--query-compute-apps`: memory,
   utilisation, temperature, power, per-process memory, while a probe tensor holds memory.
2. Train steps/s and peak memory for each real-size model with LoRA, bf16 autocast vs fp32
   (batch 16, context 512 — Kronos 448 — horizon 64).
3. Forecast latency per window at batch 1 and 256 (inference defaults: Toto 256 samples, Kronos 10,
   Chronos-2 quantiles → 100 samples).
4. Estimated (engine.vram.estimate_train_vram_gb) vs measured train VRAM per model.
5. Four Chronos-2 LoRA train jobs submitted together to the engine (real workers, NVML telemetry):
   where they were admitted, GPU busy % over the run, the idle gap between consecutive jobs.

Budget: under 8 minutes on one H100/H200-class GPU (`--quick` halves the step counts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

GIB = 1024**3
MODELS = ("toto", "chronos2", "kronos")
SHAPES = {"toto": (512, 64), "chronos2": (512, 64), "kronos": (448, 64)}
ROWS: list[tuple[str, str, str, str]] = []  # (section, item, value, compared with / note)


def row(section: str, item: str, value: Any, note: Any = "") -> None:
    ROWS.append((section, item, str(value), str(note)))


def print_table() -> None:
    widths = [max(len(r[i]) for r in ROWS + [("section", "item", "value", "vs / note")]) for i in range(4)]
    head = ("section", "item", "value", "vs / note")
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in ROWS:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def smi(query: str, kind: str = "gpu") -> list[list[str]]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    flag = "--query-gpu" if kind == "gpu" else "--query-compute-apps"
    out = subprocess.run([exe, f"{flag}={query}", "--format=csv,noheader,nounits"], capture_output=True,
                         text=True, timeout=30).stdout
    return [[c.strip() for c in ln.split(",")] for ln in out.strip().splitlines() if ln.strip()]


# ---- 1. NVML vs nvidia-smi -----------------------------------------------------------------------
def check_nvml(torch: Any) -> None:
    from engine.gpu import NvmlSource

    probe = torch.empty(int(2 * GIB), dtype=torch.uint8, device="cuda:0")  # 2 GiB held by this process
    torch.cuda.synchronize()
    src = NvmlSource()
    snap = src.snapshot()
    q = smi("index,memory.used,memory.total,utilization.gpu,temperature.gpu,power.draw")
    apps = smi("pid,used_memory", "apps")
    if not snap.available:
        row("nvml", "available", False, snap.message)
    for g in snap.gpus:
        s = next((r for r in q if r and r[0] == str(g.index)), None)

        def fmt(v: float | None, digits: int = 2) -> str:
            return "n/a" if v is None else f"{v:.{digits}f}"

        if s is not None:
            row("nvml", f"gpu{g.index} mem used GiB", fmt(g.mem_used_gb), f"smi {float(s[1]) / 1024:.2f}")
            row("nvml", f"gpu{g.index} mem total GiB", fmt(g.mem_total_gb), f"smi {float(s[2]) / 1024:.2f}")
            row("nvml", f"gpu{g.index} util %", fmt(g.util_pct, 0), f"smi {s[3]}")
            row("nvml", f"gpu{g.index} temp C", fmt(g.temp_c, 0), f"smi {s[4]}")
            row("nvml", f"gpu{g.index} power W", fmt(g.power_w, 1), f"smi {s[5]}")
        else:
            row("nvml", f"gpu{g.index}", "nvidia-smi gave no row", "")
        mine = [m for pid, m in (g.processes or []) if pid == os.getpid()]
        smi_mine = [r[1] for r in apps if r and r[0] == str(os.getpid())]
        if g.index == 0:
            row("nvml", "this process GiB (2 GiB probe)", fmt(mine[0]) if mine and mine[0] is not None else "n/a",
                f"smi {float(smi_mine[0]) / 1024:.2f}" if smi_mine and smi_mine[0].replace('.', '', 1).isdigit()
                else "smi n/a")
    src.close()
    del probe
    torch.cuda.empty_cache()


# ---- 2-4. per model ------------------------------------------------------------------------------
def windows(context: int, horizon: int, n: int) -> Any:
    import numpy as np

    from engine.forecasters.training import windows_from_close

    rng = np.random.default_rng(0)
    rows = context + horizon + n + 8
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    return windows_from_close(close, context, rows, context, horizon)


def train_speed(torch: Any, model: str, src: dict[str, str], bf16: bool, steps: int) -> tuple[float, float]:
    """(steps/s, peak allocated GiB) of LoRA steps at batch 16, autocast bf16 or plain fp32."""
    import numpy as np

    from engine.forecasters.registry import load_forecaster

    ctx, hor = SHAPES[model]
    fc: Any = load_forecaster(model, "pretrained", device="cuda", **src)
    fc.prepare_finetune("lora", rank=8)
    opt = torch.optim.AdamW(fc.trainable_parameters(), lr=1e-4)
    w = windows(ctx, hor, 64)
    fc.set_train_mode(True)
    torch.cuda.reset_peak_memory_stats()

    def step(i: int) -> Any:
        idx = np.arange(16) + (i * 16) % max(1, w.n - 16)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = fc.batch_loss(w.subset(idx), "native")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for i in range(3):  # warm-up (kernels, allocator)
        step(i)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    torch.cuda.synchronize()
    sps = steps / (time.perf_counter() - t0)
    return sps, torch.cuda.max_memory_allocated() / GIB


def forecast_latency(torch: Any, model: str, src: dict[str, str]) -> dict[int, float]:
    from engine.forecasters.registry import load_forecaster

    ctx, hor = SHAPES[model]
    fc: Any = load_forecaster(model, "pretrained", device="cuda", **src)
    samples = {"toto": 256, "kronos": 10, "chronos2": 100}[model]
    w = windows(ctx, hor, 256)
    out = {}
    import numpy as np

    fc.forecast(w.subset(np.arange(1)), num_samples=samples)  # warm-up
    for b in (1, 256):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fc.forecast(w.subset(np.arange(b)), num_samples=samples)
        torch.cuda.synchronize()
        out[b] = (time.perf_counter() - t0) / b
    return out


def free(torch: Any) -> None:
    """Drop what the last measurement left on the device, so the next one starts from empty."""
    import gc

    gc.collect()
    torch.cuda.empty_cache()


def check_models(torch: Any, root: Path, steps: int) -> dict[str, dict[str, str]]:
    from engine.forecasters.realsize import write_checkpoint
    from engine.peaks import estimate_train_vram_gb

    sources = {}
    for m in MODELS:
        t0 = time.perf_counter()
        src = write_checkpoint(m, root / m)
        sources[m] = src
        ctx, hor = SHAPES[m]
        fp32 = train_speed(torch, m, src, False, steps)
        free(torch)
        bf16 = train_speed(torch, m, src, True, steps)
        free(torch)
        row("train", f"{m} LoRA steps/s bf16", f"{bf16[0]:.2f}", f"fp32 {fp32[0]:.2f} (x{bf16[0] / fp32[0]:.2f})")
        row("train", f"{m} peak GiB bf16", f"{bf16[1]:.2f}", f"fp32 {fp32[1]:.2f}")
        lat = forecast_latency(torch, m, src)
        free(torch)
        row("forecast", f"{m} s/window batch 1", f"{lat[1]:.4f}", f"batch 256: {lat[256]:.5f}")
        est = estimate_train_vram_gb(m, 16, ctx, hor, "bf16")
        row("vram", f"{m} train bf16 GiB", f"measured {bf16[1]:.2f} (+ctx)", f"estimated {est:.2f}")
        row("time", f"{m} section s", f"{time.perf_counter() - t0:.0f}", "")
    return sources


# ---- 5. four jobs on one GPU through the engine ----------------------------------------------------
def check_engine(root: Path, src: dict[str, str], vram_gb: float) -> None:
    from engine.controller import Engine
    from engine.gpu import NvmlSource
    from engine.jobs import JobSpec
    from store import Store

    ws = root / "ws"
    nv = NvmlSource()
    util: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            t = nv.snapshot()
            if t.gpus and t.gpus[0].util_pct is not None:
                util.append(t.gpus[0].util_pct)

    async def scenario() -> list[Any]:
        store = Store.open(ws, fsync=False)
        eng = Engine(ws, store=store, poll_interval=0.1, gpu_source=nv, cpu_slots=4)
        await eng.start()
        try:
            params = {"preset": "pretrained", **src, "epochs": 1, "max_steps_per_epoch": 30, "batch_size": 16,
                      "context": 512, "horizon": 64, "mae_samples": 8}
            for _ in range(4):
                eng.submit(JobSpec.create("train", ["SPY"], "chronos2", params=params,
                                          resources={"gpus": 1, "vram_gb": vram_gb}))
            t_end = time.time() + 300
            while not all(j.finished for j in eng.jobs()) and time.time() < t_end:
                await asyncio.sleep(0.2)
            return eng.jobs()
        finally:
            await eng.stop(cancel_running=True)
            store.close()

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.time()
    jobs = asyncio.run(scenario())
    stop.set()
    th.join()
    nv.close()
    row("engine", "4 jobs states", ", ".join(j.state for j in jobs), f"{time.time() - t0:.0f} s wall")
    row("engine", "devices", ", ".join(str(j.device) for j in jobs), f"vram_gb per job {vram_gb:.2f}")
    starts = sorted((j.started_at or 0, j.finished_at or 0) for j in jobs)
    overlap = sum(1 for a, _ in starts if a < min(f for _, f in starts))
    row("engine", "jobs running together", overlap, "(started before the first one finished)")
    gaps = [max(0.0, starts[i + 1][0] - starts[i][1]) for i in range(len(starts) - 1)]
    row("engine", "idle gap between jobs s", f"{max(gaps) if gaps else 0:.2f}", "max over consecutive pairs")
    if util:
        row("engine", "GPU busy % (NVML util)", f"{statistics.mean(util):.0f}", f"max {max(util):.0f}, {len(util)} samples")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed train steps per model and dtype")
    ap.add_argument("--quick", action="store_true", help="half the steps, skip the engine section")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("no CUDA device (torch is not installed)")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # engine workers are subprocesses: they must import this checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    from engine.forecasters.device import configure_cuda_matmul

    configure_cuda_matmul()
    t0 = time.perf_counter()
    row("machine", "device", torch.cuda.get_device_name(0), f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    row("machine", "tf32 matmul / cudnn", torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    check_nvml(torch)
    root = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        sources = check_models(torch, root, max(2, args.steps // (2 if args.quick else 1)))
        if not args.quick:
            from engine.peaks import estimate_train_vram_gb

            check_engine(root, sources["chronos2"], estimate_train_vram_gb("chronos2", 16, 512, 64) * 2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    row("time", "total s", f"{time.perf_counter() - t0:.0f}", "budget 480")
    print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
