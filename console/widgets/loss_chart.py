"""Train/validation loss curves, redrawn at most ~2 Hz however fast points arrive.

Why throttle: a training job can emit dozens of loss events per second and plotext rebuilds the
whole figure on each render; we keep the points, mark the chart dirty, and redraw on a one-shot
timer so 24 streaming jobs never starve key handling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from textual_plotext import PlotextPlot

MIN_REDRAW_S = 0.5


class LossChart(PlotextPlot):
    """Two series: train loss by step and validation loss by step (if any)."""

    DEFAULT_CSS = """
    LossChart {
        height: 1fr;
        min-height: 8;
    }
    """

    #: Title while there are no points (the Live screen says why: a kind without a loss curve).
    empty_title: str = "loss — no points yet"

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._monotonic = monotonic
        self._train: list[tuple[float, float]] = []
        self._val: list[tuple[float, float]] = []
        self._last_draw = -1e9
        self._pending = False
        self.draw_count = 0

    @property
    def n_points(self) -> int:
        return len(self._train) + len(self._val)

    def set_points(self, points: Iterable[dict[str, Any]]) -> None:
        """Replace all points (from Engine.curve) and schedule a redraw."""
        self._train, self._val = [], []
        self.add_points(points, _redraw=False)
        self.schedule_redraw()

    def add_points(self, points: Iterable[dict[str, Any]], _redraw: bool = True) -> None:
        for i, p in enumerate(points):
            x = p.get("step")
            x = float(x) if isinstance(x, int | float) else float(len(self._train) + i)
            tr, va = p.get("train"), p.get("val")
            if isinstance(tr, int | float):
                self._train.append((x, float(tr)))
            if isinstance(va, int | float):
                self._val.append((x, float(va)))
        if _redraw:
            self.schedule_redraw()

    def schedule_redraw(self) -> None:
        if self._pending:
            return
        wait = self._last_draw + MIN_REDRAW_S - self._monotonic()
        if wait <= 0 or not self.is_mounted:
            self._redraw()
        else:
            self._pending = True
            self.set_timer(wait, self._redraw)

    def _redraw(self) -> None:
        self._pending = False
        self._last_draw = self._monotonic()
        self.draw_count += 1
        plt = self.plt
        plt.clear_data()
        plt.title("loss")
        plt.xlabel("step")
        if self._train:
            plt.plot([p[0] for p in self._train], [p[1] for p in self._train], label="train", marker="braille")
        if self._val:
            plt.plot([p[0] for p in self._val], [p[1] for p in self._val], label="val", marker="braille")
        if not self._train and not self._val:
            plt.title(self.empty_title)
        self.refresh()
