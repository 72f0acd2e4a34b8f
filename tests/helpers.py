"""Builders shared by several test files (one copy, so the fixtures they build cannot drift apart).

- `write_cycle_csv`: the 420-row daily series with a 16-day cycle that the train, train-command and
  sweep tests fine-tune the tiny presets on.
- `wait_for`: poll a condition inside a running event loop, failing with what was awaited.
- `cli_beside_engine`: run a CLI call while this process's engine owns the workspace (the CLI must
  spool and follow read-only), then let the engine finish the job.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.controller import Engine


def write_cycle_csv(path: Path, n: int = 420) -> None:
    """A daily series with a 16-day cycle: enough rows for train/val/test spans at h=16."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    close = 100 + 5 * np.sin(2 * np.pi * t / 16) + rng.normal(0, 0.3, n)
    days = np.datetime64("2021-01-04") + t.astype("timedelta64[D]")
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{d},{c:.4f},{c + 0.5:.4f},{c - 0.5:.4f},{c:.4f},1000" for d, c in zip(days, close, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def cli_beside_engine(ws: Path, call: Callable[[], subprocess.CompletedProcess[str]]
                      ) -> tuple[subprocess.CompletedProcess[str], Engine]:
    """Run `call` (a CLI subprocess) in a thread while an engine here holds the store lock.

    The engine keeps running until its jobs are finished (at most 5 s after the CLI returns), then
    stops; returns the CLI's result and the stopped engine (its job states stay readable).
    """
    from engine.controller import Engine
    from engine.gpu import FakeGpuSource
    from store import Store

    async def scenario() -> tuple[subprocess.CompletedProcess[str], Engine]:
        store = Store.open(ws, fsync=False)
        eng = Engine(ws, store=store, poll_interval=0.02, validate_symbols=False, gpu_source=FakeGpuSource(0))
        await eng.start()
        try:
            r = await asyncio.to_thread(call)
            t0 = time.monotonic()
            while not all(j.finished for j in eng.jobs()) and time.monotonic() - t0 < 5:
                await asyncio.sleep(0.02)
            return r, eng
        finally:
            await eng.stop()
            store.close()

    return asyncio.run(scenario())
