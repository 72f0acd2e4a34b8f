"""The load bench_console measures under: 24 seeded jobs whose progress, loss and log lines stream
into the console's engine mirror, and a store of many tracked runs.

Why a module of its own: bench_console.py (the measuring and reporting) imports it by name from
its own folder, so the --before side measures the other tree's console under this same load.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

N_JOBS = 24


def seed_jobs(ws: Path, hp: Path) -> list[str]:
    from engine.jobs import JobSpec
    from store import Store

    st = Store.open(ws, hyperparams_dir=hp)
    ids = []
    try:
        for i in range(N_JOBS):
            jid = f"20250101-1200{i:02d}-000-train-{i:08x}"
            spec = JobSpec(id=jid, kind="train", symbols=("SPY",), model="toto", created_at=1.7e9 + i)
            st.put_job({"id": jid, "kind": "train", "symbols": ["SPY"], "model": "toto", "state": "succeeded",
                        "priority": 0, "attempt": 1, "created_at": 1.7e9 + i, "spec": spec.to_dict()})
            ids.append(jid)
    finally:
        st.close()
    return ids


def seed_runs(ws: Path, hp: Path, n: int) -> float:
    """`n` tracked runs in one ledger transaction (as many sweeps would leave); returns seconds taken."""
    from store import Store

    t0 = time.perf_counter()
    st = Store.open(ws, hyperparams_dir=hp)
    models, symbols = ("toto", "kronos", "chronos2"), ("SPY", "AAPL", "NVDA", "MSFT", "TSLA", "COIN")
    win = {"span": "val", "count": 12, "stride": 4, "rows_covered": 60}
    try:
        with st.transaction():
            for i in range(n):
                st.log_run(models[i % 3], symbols[i % 6], {"preset": "tiny", "lr": 1e-4 * (1 + i % 7), "horizon": 16},
                           {"val_mae_pct": 3.0 + (i * 7919 % 1000) / 250, "val_loss": 0.2 + (i % 50) / 100},
                           training_time=10.0 + i % 90, seed=i, job_id=f"20250101-120000-000-sweep-{i % 24:08x}",
                           extra={"horizon": 16, "preset": "tiny", "val_windows": win})
    finally:
        st.close()
    return time.perf_counter() - t0


async def stream(app: Any, ids: list[str], rate: float, stop: asyncio.Event, cpu: list[float]) -> int:
    """Feed the console's engine mirror the lines its socket would carry (engine.service's updates),
    two symbols per job as a two-symbol train job streams them; building the lines is the streamer's
    CPU (added to `cpu[0]`, to be subtracted), decoding and folding them (what the mirror's socket
    reader does) the console's."""
    from engine import channel

    mirror = app.services.engine
    step = sent = 0
    period = 1.0 / rate
    while not stop.is_set():
        step += 1
        c0 = time.process_time()
        lines = []
        for jid in ids:
            rec = mirror.job(jid).to_record()
            done = float(step % 1000)
            sym = "SPY" if done < 500 else "AAPL"
            loss = 1.0 / (1 + 0.01 * step)
            rec.update(state="running", progress_total=2.0, progress_done=done / 500, eta_s=1000.0 - step,
                       last_train_loss=loss, stage="training", symbol=sym, symbol_i=1 + int(done >= 500), symbol_n=2)
            for kind, data, job in (
                ("progress", {"done": done / 500, "total": 2.0, "stage": "training", "symbol": sym}, rec),
                ("loss", {"step": step % 500 + 1, "epoch": step // 100, "train": loss, "symbol": sym,
                          "run": f"run-{sym}"}, None),
                ("log", {"level": "info", "msg": f"step {step}"}, None),
            ):
                lines.append(channel.encode({"update": {"job_id": jid, "kind": kind, "data": data}, "job": job}))
                sent += 1
        cpu[0] += time.process_time() - c0
        for line in lines:
            mirror._apply(channel.decode(line))  # the mirror's own fold of one socket line (console code)
        await asyncio.sleep(period)
    return sent
