"""The JSON-lines event stream a worker writes and the engine tails.

One object per line, `{"job": id, "t": unix_s, "type": ..., ...}`, appended to
`jobs/<id>/events.jsonl` and flushed per line, so a job's history survives the console and a
re-attaching engine can read it from any offset. A long job's file is rotated into compacted
segments (engine.eventlog: heartbeats dropped, every other event kept); offsets are logical, so one
recorded before a rotation still means the same place after it. Types and their fields:

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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from engine.eventlog import TailChunk, live_base, read_events, rotate, rotate_bytes_from_env

EVENT_TYPES: frozenset[str] = frozenset(
    {"started", "progress", "loss", "metric", "log", "artifact", "heartbeat", "result", "error"}
)


def json_ready(value: Any) -> Any:
    """`value` as plain JSON: NaN/inf become null (a bad loss never breaks the stream, a report with an
    undefined DM test still writes), numpy/torch scalars their Python value, tuples lists, keys text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return json_ready(value.item())
        except (TypeError, ValueError):
            pass
    return value


class EventWriter:
    """Appends events for one job; thread-safe (a heartbeat thread writes beside the task).

    Rotates the file (engine.eventlog) once it holds `rotate_bytes` (default: the worker's
    $FORECAST_EVENTS_ROTATE_BYTES, else 1 MiB; 0 never rotates), between two of its own appends:
    the one writer of a file is the only one that may rotate it. Each line is one unbuffered write."""

    def __init__(self, path: os.PathLike[str] | str, job_id: str, rotate_bytes: int | None = None) -> None:
        self.path = Path(path)
        self.job_id = job_id
        self.rotate_bytes = rotate_bytes_from_env() if rotate_bytes is None else int(rotate_bytes)
        self._lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self._fh: BinaryIO = open(self.path, "ab", buffering=0)
        with open(self.path, "rb") as fh:
            self._base, _ = live_base(fh)
            fh.seek(0, os.SEEK_END)
            self._size = fh.tell()
            if self._size:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            else:
                torn = False
        if torn:  # an earlier writer died mid-line: end that line, so it alone is unreadable, not our first
            self._fh.write(b"\n")
            self._size += 1

    def emit(self, type_: str, **fields: Any) -> None:
        if type_ not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type_!r}")
        if "type" in fields or "job" in fields or "t" in fields:
            raise ValueError("event fields may not be named 'type', 'job' or 't'")
        rec = {"job": self.job_id, "t": time.time(), "type": type_, **json_ready(fields)}
        self.append_lines([json.dumps(rec, separators=(",", ":"), default=str)])

    def append_lines(self, lines: Iterable[str]) -> None:
        """Append event lines already serialised (one JSON object each, without the newline): the
        Ray driver copies a shipped job's lines into the workspace's file through here, so that file
        rotates by the same rule as one a local worker writes."""
        with self._lock:
            for text in lines:
                line = (text + "\n").encode("utf-8")
                view = memoryview(line)
                while view:  # one write for a line of any usual size; a short write is finished, not lost
                    view = view[self._fh.write(view) or 0:]
                self._size += len(line)
                if self.rotate_bytes and self._size >= self.rotate_bytes:
                    self._fh.close()
                    try:  # a failed rotation (disk full) leaves the live file as it was, still appended to
                        self._base = rotate(self.path, self._base)
                    finally:
                        self._open()

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


def job_result(path: os.PathLike[str] | str) -> dict[str, Any] | None:
    """The payload of a job's `result` event (what its task returned), or None."""
    for e in reversed(read_events(path, 0).events):
        if e.get("type") == "result":
            return {k: v for k, v in e.items() if k not in ("job", "t", "type")}
    return None


__all__ = ["EVENT_TYPES", "EventWriter", "TailChunk", "job_result", "read_events"]
