"""Event-file growth of a long job, rotated (engine.eventlog) and not (prints figures; not a test).

    python bench/event_file_growth.py [--days 1] [--heartbeat-s 5] [--loss-every-s 60]

Writes the events of a job that runs `--days` days with the worker's heartbeat every
`--heartbeat-s` seconds and a loss point + progress every `--loss-every-s` seconds, through the real
EventWriter, once never rotated and once with the default rotation (1 MiB). Prints each one's bytes
on disk, how many events a reader gets from offset 0, and what a recovering engine reads: from
its recorded offset near the end (what recovery does) and from byte 0 (what it did before).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.eventlog import ROTATE_BYTES, read_events, segments  # noqa: E402
from engine.events import EventWriter  # noqa: E402


def write_job(path: Path, seconds: float, beat: float, loss_every: float, rotate: int) -> int:
    """The events of one long job; returns the logical offset after the last but 20 events."""
    w = EventWriter(path, "job-bench", rotate_bytes=rotate)
    w.started()
    step, t, next_loss, mark = 0, 0.0, loss_every, 0
    total = int(seconds / beat)
    for i in range(total):
        t += beat
        w.heartbeat()
        if t >= next_loss:
            step += 1
            next_loss += loss_every
            w.loss(step=step, epoch=step // 100, train=1.0 / step, val=1.2 / step, symbol="SPY", run="r")
            w.progress(step, seconds / loss_every, stage="training")
        if i == total - 20:
            mark = read_events(path, mark).offset
    w.close()
    return mark


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=1.0)
    ap.add_argument("--heartbeat-s", type=float, default=5.0)
    ap.add_argument("--loss-every-s", type=float, default=60.0)
    args = ap.parse_args()
    seconds = args.days * 86400
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        for label, rotate in (("never rotated", 0), (f"rotated at {ROTATE_BYTES >> 20} MiB", ROTATE_BYTES)):
            d = Path(tmp) / str(rotate)
            d.mkdir()
            path = d / "events.jsonl"
            t0 = time.perf_counter()
            mark = write_job(path, seconds, args.heartbeat_s, args.loss_every_s, rotate)
            wrote = time.perf_counter() - t0
            disk = path.stat().st_size + sum(p.stat().st_size for _, p in segments(path))
            t0 = time.perf_counter()
            whole = read_events(path).events
            all_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            tail = read_events(path, mark).events
            tail_s = time.perf_counter() - t0
            losses = sum(e.get("type") == "loss" for e in whole)
            print(f"{label:<20} {disk / 1e6:7.2f} MB on disk ({len(segments(path))} segments, live "
                  f"{path.stat().st_size / 1e3:.0f} KB); {len(whole)} events from 0 ({losses} loss points) "
                  f"read in {all_s * 1000:.1f} ms; recovery from its offset reads {len(tail)} events in "
                  f"{tail_s * 1000:.2f} ms; writing took {wrote:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
