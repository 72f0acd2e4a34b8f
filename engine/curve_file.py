"""A training run's loss curve on disk: `<run folder>/curve.jsonl`, one loss point (a JSON object) a line.

Why one module: the train loop writes the file (engine.forecasters.training.Events), and the
console reads it (the run browser's detail chart, Live's overlay of earlier runs); both sides spell
the name and parse the lines here. Pure standard library, so the console may import it without torch.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

#: The curve's file name inside a run folder.
CURVE_FILE = "curve.jsonl"


def curve_path(run_dir: Path) -> Path:
    return run_dir / CURVE_FILE


def append_point(path: Path, point: dict[str, Any]) -> None:
    """Append one loss point (a line); a crash mid-write leaves at most one half line, which readers skip."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(point) + "\n")


def read_curve(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The loss points of a curve file, oldest first (the newest `limit` when given); [] when absent or
    unreadable. Lines that are not a JSON object (a half-written last line) are skipped."""
    out: deque[dict[str, Any]] = deque(maxlen=limit)
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
    except OSError:
        return []
    return list(out)
