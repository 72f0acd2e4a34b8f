"""A job's event file on disk: one live file, rotated into compacted segments, read from an offset.

Why rotate: a worker heartbeats every few seconds for as long as it runs, so the event file of a
long job grew without end (about 1.5 MB a day of heartbeats alone). The writer (engine.events)
rotates the live file `events.jsonl` once it holds `rotate_bytes`: its lines are copied, compacted,
into a segment beside it, and a new live file starts. Compacting keeps every event that a job's
history, recovery or attach reads (started, progress, loss, metric, log, artifact, result, error,
unreadable lines as their warning) and drops the heartbeats but the segment's last one: a heartbeat
only says the worker was alive then, and a later event says more. So the live file stays under
`rotate_bytes` and the segments grow only with events that mean something.

Offsets are logical: the byte position the event would have in one file that was never rotated
(segment headers count as bytes too), so every offset handed out before a rotation stays valid
after it, and the engine's recorded offset means the same thing whatever happened to the files:
- the live file of a never-rotated job has no header and starts at offset 0; after a rotation it
  starts with the line `{"type": "segment", "base": B}`: its byte p is logical offset B + p;
- a segment `events.<B as 16 digits>.jsonl` covers logical [B, E): a header line
  `{"type": "segment", "base": B, "end": E}`, then one line `[o, event]` per kept event, `o` the
  logical offset just past the event's original line.
A reader at offset L below the live file's base reads the segments' kept events with o > L, then
the live file. The writer writes the segment (atomically) before it replaces the live file
(atomically, with the new header), so a reader that finds a live file with base B finds every
segment below B; a reader that still holds the old live file open reads it as it was.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.atomic import atomic_write_bytes

#: The live file is rotated once it holds this many bytes (FORECAST_EVENTS_ROTATE_BYTES; 0: never).
ROTATE_BYTES = 1 << 20
ENV_ROTATE = "FORECAST_EVENTS_ROTATE_BYTES"
#: The `type` of a header line (first line of a segment, or of a live file after a rotation): not an event.
SEGMENT = "segment"
_HEADER_MAX = 200  # a header line is well under this; the first line is parsed only if it fits


@dataclass
class TailChunk:
    events: list[dict[str, Any]]
    offset: int  # logical offset to resume from (only complete lines are consumed)


def rotate_bytes_from_env() -> int:
    """The rotation size a worker uses: $FORECAST_EVENTS_ROTATE_BYTES if a non-negative integer."""
    raw = os.environ.get(ENV_ROTATE, "")
    try:
        value = int(raw)
    except ValueError:
        return ROTATE_BYTES
    return value if value >= 0 else ROTATE_BYTES


def segment_path(live: Path, base: int) -> Path:
    """`events.0000000000123456.jsonl` beside `events.jsonl`: sorts by name as by offset."""
    return live.with_name(f"{live.stem}.{base:016d}{live.suffix}")


def segments(live: Path) -> list[tuple[int, Path]]:
    """(base, path) of every segment beside `live`, lowest offset first."""
    out = []
    for p in live.parent.glob(f"{live.stem}.*{live.suffix}"):
        mid = p.name[len(live.stem) + 1: len(p.name) - len(live.suffix)]
        if len(mid) == 16 and mid.isdigit():
            out.append((int(mid), p))
    return sorted(out)


def header(base: int, end: int | None = None) -> bytes:
    rec: dict[str, Any] = {"type": SEGMENT, "base": base}
    if end is not None:
        rec["end"] = end
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def parse_header(first: bytes) -> dict[str, int] | None:
    """The header fields of a file's first line (`base`, maybe `end`), or None for an event line."""
    if not first.endswith(b"\n") or len(first) > _HEADER_MAX or b'"segment"' not in first:
        return None
    try:
        rec = json.loads(first)
    except ValueError:
        return None
    if not isinstance(rec, dict) or rec.get("type") != SEGMENT or not isinstance(rec.get("base"), int):
        return None
    return {k: v for k, v in rec.items() if k in ("base", "end") and isinstance(v, int)}


def live_base(fh: Any) -> tuple[int, int]:
    """(logical base, header length) of an open live file (0, 0 when it was never rotated)."""
    fh.seek(0)
    head = parse_header(fh.readline(_HEADER_MAX + 1))
    if head is None:
        return 0, 0
    return head["base"], fh.tell()


def _parse_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Events of complete lines; an unreadable line becomes a `log` warning rather than being dropped."""
    try:  # fast path: one parse for the whole chunk (the engine's throughput depends on it)
        parsed = json.loads("[" + ",".join(lines) + "]")
        if len(parsed) == len(lines) and all(isinstance(e, dict) for e in parsed):
            return parsed
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
    return events


def compact(data: bytes, base: int) -> bytes:
    """A segment for the complete live-file bytes `data` whose first byte is logical offset `base`."""
    kept: list[tuple[int, dict[str, Any]]] = []
    pos = base
    for raw in data.splitlines(keepends=True):
        pos += len(raw)
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        ev = _parse_lines([text])[0]
        if ev.get("type") == SEGMENT:
            continue
        kept.append((pos, ev))
    last_beat = max((i for i, (_, ev) in enumerate(kept) if ev.get("type") == "heartbeat"), default=-1)
    body = b"".join(json.dumps([o, ev], separators=(",", ":"), default=str).encode() + b"\n"
                    for i, (o, ev) in enumerate(kept) if ev.get("type") != "heartbeat" or i == last_beat)
    return header(base, base + len(data)) + body


def rotate(live: Path, base: int) -> int:
    """Move the live file's lines into a compacted segment and start a new live file; returns the new
    live file's base. Only the file's one writer calls this, between two of its own appends."""
    data = live.read_bytes()
    end = base + len(data)
    atomic_write_bytes(segment_path(live, base), compact(data, base))
    atomic_write_bytes(live, header(end))
    return end


def _read_segment(path: Path, offset: int, limit: int | None) -> tuple[list[dict[str, Any]], int, bool]:
    """(events with o in (offset, limit], new offset, whole segment consumed)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], offset, True
    first, _, body = data.partition(b"\n")
    head = parse_header(first + b"\n") or {}
    end = head.get("end", offset)
    lines = [ln for ln in body.splitlines() if ln.strip()]
    try:  # one parse for the whole segment (written whole, atomically) ...
        rows = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # ... unless the disk damaged it: then what still parses, line by line
        rows = []
        for ln in lines:
            try:
                rows.append(json.loads(ln))
            except ValueError:
                continue
    events: list[dict[str, Any]] = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int) and isinstance(row[1], dict)):
            continue
        o, ev = row
        if o <= offset:
            continue
        if limit is not None and o > limit:
            return events, offset, False
        events.append(ev)
        offset = o
    if limit is not None and end > limit:
        return events, offset, False
    return events, max(offset, end), True


def read_events(path: os.PathLike[str] | str, offset: int = 0, limit: int | None = None) -> TailChunk:
    """Events of complete lines from logical `offset` (up to logical `limit`), through the rotated
    segments when `offset` lies before the live file; a half-written last line is left for the next
    read. Unreadable lines become `log` warnings rather than being dropped."""
    live = Path(path)
    events: list[dict[str, Any]] = []
    try:
        with open(live, "rb") as fh:
            base, hlen = live_base(fh)
            if offset < base:
                for seg_base, seg in segments(live):
                    if seg_base >= base or (limit is not None and offset >= limit):
                        break
                    got, offset, whole = _read_segment(seg, max(offset, seg_base), limit)
                    events += got
                    if not whole:
                        return TailChunk(events, offset)
                if limit is not None and limit < base:
                    return TailChunk(events, offset)
                offset = max(offset, base)  # a segment gone missing: go on from the live file
            start = max(offset - base, hlen)
            fh.seek(start)
            data = fh.read() if limit is None else fh.read(max(0, limit - base - start))
    except FileNotFoundError:
        return TailChunk(events, offset)
    end = data.rfind(b"\n")
    if end < 0:
        return TailChunk(events, max(offset, base + start))
    lines = [ln for ln in data[: end + 1].decode("utf-8", "replace").splitlines() if ln.strip()]
    events += _parse_lines(lines)
    return TailChunk(events, base + start + end + 1)


__all__ = ["ENV_ROTATE", "ROTATE_BYTES", "SEGMENT", "TailChunk", "compact", "read_events", "rotate",
           "rotate_bytes_from_env", "segment_path", "segments"]
