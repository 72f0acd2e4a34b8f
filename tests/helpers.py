"""Builders shared by several test files (one copy, so the fixtures they build cannot drift apart).

- `write_cycle_csv`: the 420-row daily series with a 16-day cycle that the train, train-command and
  sweep tests fine-tune the tiny presets on.
- `wait_for`: poll a condition inside a running event loop, failing with what was awaited.
- `cli_beside_console`: run a CLI call while a console (a live engine-service client) is open.
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
    from engine.state import JobState


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


def cli_beside_console(ws: Path, call: Callable[[], subprocess.CompletedProcess[str]]
                       ) -> tuple[subprocess.CompletedProcess[str], list[JobState]]:
    """Run `call` (a CLI subprocess) while a console is open on the workspace.

    The console is what a console is now: a live client of the workspace's engine service (a real
    `EngineMirror` subscribed over the socket, in its own event loop). Returns the CLI's result and
    the jobs as that console saw them once they had all finished (at most 10 s after the CLI).
    """
    from console.job_mirror import EngineMirror

    async def scenario() -> tuple[subprocess.CompletedProcess[str], list[JobState]]:
        console = EngineMirror(ws, poll_interval=0.02)
        await console.open()
        try:
            r = await asyncio.to_thread(call)
            await wait_for(lambda: bool(console.jobs()) and all(j.finished for j in console.jobs()), 10,
                           "the console to see every job finish")
            return r, console.jobs()
        finally:
            await console.close()

    return asyncio.run(scenario())
