"""The JSON-lines event stream a worker writes and the engine tails.

One object per line, `{"job": id, "t": unix_s, "type": ..., ...}`, appended to
`jobs/<id>/events.jsonl` and flushed per line, so a job's history survives the console and a
re-attaching engine can read it from any offset. Types and their fields:

    started{pid}  progress{done,total,eta_s?,stage?,symbol?,symbol_i?,symbol_n?,epoch_i?,epoch_n?}
    loss{step,epoch,train,val?,symbol?,run?}
    metric{name,value}  log{level,msg}  artifact{kind,path}  heartbeat{}
    result{...payload...}  error{exc_type,msg,trace}

(`error` carries the exception class as `exc_type`: a field named `type` would overwrite the
event's own `type`.) A job over several symbols names the one it is on: `loss` carries `symbol` and
`run` (the run id of that symbol's training, so a console draws one curve per run, never one line
through all of them); `progress` may say where the job is (`symbol` and its 1-based `symbol_i` of
`symbol_n`, `epoch_i` of `epoch_n`) — optional fields are left out when unknown.

The `result` payload is how a task hands data to the store (the worker never writes it):
    runs:        [ {model, symbol, hyperparams, metrics, checkpoint?, training_time?, notes?, seed?} ]
    baselines:   [ {symbol, model, horizon, span, metrics...} ]
    picks:       [ {model, symbol, config, selection_metric, validation{}, test{}, windows{}, source_run?} ]
    comparisons: [ {symbol, horizon, model, metrics..., winner: bool, dm_pvalue, ...} ]
    regressions: [ {...} ]
    summary:     {...}  free-form, shown to the user
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

EVENT_TYPES: frozenset[str] = frozenset(
    {"started", "progress", "loss", "metric", "log", "artifact", "heartbeat", "result", "error"}
)


def _clean(value: Any) -> Any:
    """NaN/inf are not JSON; they become null so a bad loss never breaks the stream."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _clean(value.item())
        except (TypeError, ValueError):
            pass
    return value


class EventWriter:
    """Appends events for one job; thread-safe (a heartbeat thread writes beside the task)."""

    def __init__(self, path: os.PathLike[str] | str, job_id: str) -> None:
        self.path = Path(path)
        self.job_id = job_id
        self._lock = threading.Lock()
        self._fh: TextIO = open(self.path, "a", encoding="utf-8", buffering=1)

    def emit(self, type_: str, **fields: Any) -> None:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        if "type" in fields or "job" in fields or "t" in fields:
            raise ValueError("event fields may not be named 'type', 'job' or 't'")
        rec = {"job": self.job_id, "t": time.time(), "type": type_, **_clean(fields)}
        line = json.dumps(rec, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    # Convenience wrappers: they document the fields each type carries.
    def started(self) -> None:
        self.emit("started", pid=os.getpid())

    def progress(self, done: float, total: float, eta_s: float | None = None, stage: str | None = None, *,
                 symbol: str | None = None, symbol_i: int | None = None, symbol_n: int | None = None,
                 epoch_i: int | None = None, epoch_n: int | None = None) -> None:
        where = {"symbol": symbol, "symbol_i": symbol_i, "symbol_n": symbol_n, "epoch_i": epoch_i, "epoch_n": epoch_n}
        self.emit("progress", done=done, total=total, eta_s=eta_s, stage=stage,
                  **{k: v for k, v in where.items() if v is not None})

    def loss(self, step: int, epoch: int, train: float | None, val: float | None = None, *,
             symbol: str | None = None, run: str | None = None) -> None:
        tags = {k: v for k, v in (("symbol", symbol), ("run", run)) if v is not None}
        self.emit("loss", step=step, epoch=epoch, train=train, val=val, **tags)

    def metric(self, name: str, value: float) -> None:
        self.emit("metric", name=name, value=value)

    def log(self, msg: str, level: str = "info") -> None:
        self.emit("log", level=level, msg=msg)

    def artifact(self, kind: str, path: os.PathLike[str] | str) -> None:
        self.emit("artifact", kind=kind, path=str(path))

    def heartbeat(self) -> None:
        self.emit("heartbeat")

    def result(self, payload: dict[str, Any]) -> None:
        self.emit("result", **payload)

    def error(self, exc: BaseException) -> None:
        self.emit("error", exc_type=type(exc).__name__, msg=str(exc),
                  trace="".join(traceback.format_exception(exc))[-8000:])

    def close(self) -> None:
        with self._lock:
            self._fh.close()


@dataclass
class TailChunk:
    events: list[dict[str, Any]]
    offset: int  # byte offset to resume from (only complete lines are consumed)


def read_events(path: os.PathLike[str] | str, offset: int = 0, limit: int | None = None) -> TailChunk:
    """Read complete lines from `offset` (up to byte `limit`); a half-written last line is left for
    the next read. Unreadable lines become `log` warnings rather than being dropped."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read() if limit is None else fh.read(max(0, limit - offset))
    except FileNotFoundError:
        return TailChunk([], offset)
    end = data.rfind(b"\n")
    if end < 0:
        return TailChunk([], offset)
    lines = [ln for ln in data[: end + 1].decode("utf-8", "replace").splitlines() if ln.strip()]
    try:  # fast path: one parse for the whole chunk (the engine's throughput depends on it)
        parsed = json.loads("[" + ",".join(lines) + "]")
        if len(parsed) == len(lines) and all(isinstance(e, dict) for e in parsed):
            return TailChunk(parsed, offset + end + 1)
    except json.JSONDecodeError:
        pass
    events: list[dict[str, Any]] = []
    for raw in lines:
        try:
            ev = json.loads(raw)
        except json.JSONDecodeError:
            ev = None
        if not isinstance(ev, dict):
            ev = {"type": "log", "level": "warning", "msg": f"unreadable event line: {raw[:200]!r}"}
        events.append(ev)
    return TailChunk(events, offset + end + 1)


def job_result(path: os.PathLike[str] | str) -> dict[str, Any] | None:
    """The payload of a job's `result` event (what its task returned), or None."""
    for e in reversed(read_events(path, 0).events):
        if e.get("type") == "result":
            return {k: v for k, v in e.items() if k not in ("job", "t", "type")}
    return None
