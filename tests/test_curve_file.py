"""The one curve file of a run: what the train loop appends, the console reads back."""

from __future__ import annotations

from pathlib import Path

from engine.curve_file import CURVE_FILE, append_point, curve_path, read_curve


def test_points_appended_read_back_in_order_and_half_lines_skipped(tmp_path: Path) -> None:
    path = curve_path(tmp_path)
    assert path == tmp_path / CURVE_FILE == tmp_path / "curve.jsonl"
    assert read_curve(path) == []  # absent: no points, no error
    for step in range(1, 6):
        append_point(path, {"step": step, "train": 1.0 / step})
    with open(path, "a", encoding="utf-8") as fh:  # what a crash mid-write leaves, then a non-object line
        fh.write('{"step": 6, "tra')
        fh.write("\n[1, 2]\n")
    pts = read_curve(path)
    assert [p["step"] for p in pts] == [1, 2, 3, 4, 5]
    assert [p["step"] for p in read_curve(path, limit=2)] == [4, 5]  # the newest ones


def test_training_events_write_the_file_the_console_reads(tmp_path: Path) -> None:
    from console.run_browser import CURVE_MAX_POINTS
    from engine.forecasters.training import Events

    ev = Events(None, curve_path(tmp_path), min_interval=0.0)
    ev.step(1, 0, 0.9, 1, 2, None)
    ev.epoch(2, 0, 0.8, 0.7)
    pts = read_curve(curve_path(tmp_path), CURVE_MAX_POINTS)
    assert [(p["step"], p.get("val")) for p in pts] == [(1, None), (2, 0.7)]
