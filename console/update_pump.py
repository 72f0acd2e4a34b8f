"""The app's update pump: drain the engine mirror's queue of JobUpdates in coalesced batches.

Why batches: each batch repaints the changed table rows, and repainting is the console's main CPU
cost. At 10 batches/s 24 jobs × 20 events/s took ~22 % of a core, at 2.5/s it is under 10 %
(bench/bench_console.py). Keys are handled at once; only the streamed figures wait.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

#: Coalescing window of the update pump (≤ 2.5 batches per second however fast events arrive).
PUMP_INTERVAL_S = 0.4


def group_updates(batch: Iterable[Any]) -> tuple[set[str], dict[str, list[dict[str, Any]]], dict[str, list[str]]]:
    """(job ids that changed, loss points by job, log lines by job) of a batch of JobUpdates."""
    ids: set[str] = set()
    losses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    logs: dict[str, list[str]] = defaultdict(list)
    for u in batch:
        ids.add(u.job_id)
        if u.kind == "loss":
            losses[u.job_id].append(dict(u.data))
        elif u.kind == "log":
            logs[u.job_id].append(log_text(u.data))
    return ids, dict(losses), dict(logs)


def log_text(data: dict[str, Any]) -> str:
    """A streamed log update's line as the engine wrote it in the job's log tail (`HH:MM:SS level msg`,
    engine.jobtable.log_line), so a streamed line reads like the same line in the tail read later."""
    line = data.get("line")
    if line:
        return str(line)
    return f"{data.get('level', 'info'):<7} {data.get('msg', '')}"


async def pump(queue: asyncio.Queue[Any], dispatch: Callable[[list[Any]], None],
               interval: float = PUMP_INTERVAL_S) -> None:
    """Forever: wait for one update, take all that queued behind it, dispatch them, then wait `interval`."""
    while True:
        first = await queue.get()
        batch = [first]
        while True:
            try:
                batch.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        dispatch(batch)
        await asyncio.sleep(interval)
