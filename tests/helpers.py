"""Builders shared by several test files (one copy, so the fixtures they build cannot drift apart).

- `write_cycle_csv`: the 420-row daily series with a 16-day cycle that the train, train-command and
  sweep tests fine-tune the tiny presets on.
- `wait_for`: poll a condition inside a running event loop (through a Textual Pilot when given one),
  failing with what was awaited. Every test waits with this one.
- `notices`, `outcome`: what a console app said in notifications (a flow's outcome is one of them).
- `job_states`: a wait_for `detail` naming an engine's jobs, states and reasons.
- `cli_beside_console`: run a CLI call while a console (a live engine-service client) is open.
- `engines`: in-process Engines over one workspace with test timings (poll 20 ms, heartbeat 0.2 s,
  grace 1 s, no symbol checks, no GPU), each stopped and its store closed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from engine.controller import Engine
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


async def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition", *,
                   pilot: Pilot[Any] | None = None, detail: Callable[[], str] | None = None,
                   tick: Callable[[], None] | None = None) -> None:
    """Poll `cond` inside a running event loop until it is true; after `timeout` seconds fail with
    `what` (and `detail()`, e.g. the jobs' states, when given).

    With a Textual `pilot` each poll is a `pilot.pause`, which also lets the app process its
    messages and timers between looks; without one it is a plain `asyncio.sleep`. `tick` is called
    on every poll (to sample something while waiting).
    """
    if not callable(cond):
        raise TypeError(f"wait_for(cond, timeout, what, pilot=...) takes the condition first, got {cond!r}")
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            extra = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        if tick is not None:
            tick()
        if pilot is not None:
            await pilot.pause(0.05)
        else:
            await asyncio.sleep(0.02)


def notices(app: Any) -> list[str]:
    """What a console app has said in notifications ("title: message"), oldest first."""
    return [f"{n.title}: {n.message}" for n in app._notifications]


def outcome(app: Any, *titles: str) -> str | None:
    """The title of the app's latest notification among `titles` (a flow's outcome), or None yet."""
    return next((n.title for n in reversed(list(app._notifications)) if n.title in titles), None)


def job_states(engine: Engine) -> Callable[[], str]:
    """A `detail` for wait_for: every job of `engine` with its state and reason."""
    return lambda: "jobs: " + "; ".join(f"{j.id} {j.state} {j.reason}" for j in engine.jobs())


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


@contextlib.asynccontextmanager
async def engines(ws: Path, **defaults: Any) -> AsyncIterator[Callable[..., Any]]:
    """`make(**kw)` starts an Engine on `ws` (kw over `defaults` over the test timings); every Engine
    made is stopped (its running jobs cancelled) and its store closed when the block ends. A default
    that is a zero-argument callable (e.g. a backend class) is called per Engine, so none is shared."""
    from engine.controller import Engine
    from engine.gpu import FakeGpuSource
    from store import Store

    made: list[tuple[Engine, Store]] = []

    async def make(**kw: Any) -> Engine:
        store = Store.open(ws, fsync=False)
        opts: dict[str, Any] = {"poll_interval": 0.02, "heartbeat_s": 0.2, "cancel_grace_s": 1.0,
                                "validate_symbols": False, "gpu_source": FakeGpuSource(0)}
        opts.update({k: v() if callable(v) else v for k, v in defaults.items()})
        opts.update(kw)
        eng = Engine(ws, store=store, **opts)
        await eng.start()
        made.append((eng, store))
        return eng

    try:
        yield make
    finally:
        for eng, store in made:
            await eng.stop(cancel_running=True)
            store.close()
