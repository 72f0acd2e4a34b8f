"""Loss curves of a job, one train and one validation series per symbol/run, redrawn at most every 2 s while streaming.

Why one series per run: a job that trains NVDA then SPY restarts its steps for SPY; one "train"
list would draw a line from NVDA's last step back to SPY's first. Loss points name their symbol
and run (engine.events), so each run gets its own pair of lines from its own step 1 and the
curves of two symbols (or of earlier runs of the same model and symbol, overlaid dimmed) can be
compared on one axis.

Markers: `*` on each run's best validation epoch (the one training keeps), `x` where a run stopped
early. Options (keys on the Live screen): smoothing (an exponential moving average of the train
loss) and a log y axis.

Why throttle: a training job can emit dozens of loss events per second and plotext rebuilds the
whole figure on each render; we keep the points and redraw at most every MIN_REDRAW_S (one
`console.ratelimit.RateLimit`: at once when the first points come after a quiet interval) so 24
streaming jobs never starve key handling. Each series is thinned to about two points
per character column before plotting (braille resolution), so a long run costs no more to draw
than a short one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from textual_plotext import PlotextPlot

from console.ratelimit import RateLimit

#: Streamed points redraw the chart at most this often (a plotext render is the Live screen's largest cost).
MIN_REDRAW_S = 2.0
#: A key's redraw waits this long, and a newer key's replaces it.
KEY_REDRAW_DELAY_S = 0.1
#: Weight of the newest point in the smoothed train curve.
SMOOTH_ALPHA = 0.2
#: Colours of the job's runs in order; earlier runs overlaid are grey.
COLORS = ("cyan", "orange", "green", "magenta", "blue", "red", "yellow")


@dataclass
class Series:
    """One run's points: train by step, validation by step (with the epoch it closed)."""

    label: str
    train: list[tuple[float, float]] = field(default_factory=list)
    val: list[tuple[float, float, int | None]] = field(default_factory=list)
    stopped_early: bool = False
    earlier: bool = False  # an overlaid earlier run, not one of this job's
    last_step: float | None = None  # the newest step taken
    taken_at_last: set[tuple[Any, Any]] = field(default_factory=set)  # (train, val) of the points at it

    def best(self) -> tuple[float, float, int | None] | None:
        """The kept validation point: the first minimum (training keeps an epoch only if strictly better)."""
        best = None
        for p in self.val:
            if best is None or p[1] < best[1]:
                best = p
        return best


def _thin(points: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    if len(points) <= n:
        return points
    stride = math.ceil(len(points) / n)
    out = points[::stride]
    return out if out[-1] is points[-1] else [*out, points[-1]]


def _smooth(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, acc = [], None
    for x, y in points:
        acc = y if acc is None else SMOOTH_ALPHA * y + (1 - SMOOTH_ALPHA) * acc
        out.append((x, acc))
    return out


def series_key(point: dict[str, Any]) -> str:
    """Which series a loss point belongs to: its run, else its symbol, else the job's one series."""
    return str(point.get("run") or point.get("symbol") or "")


class LossChart(PlotextPlot):
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
        self.series: dict[str, Series] = {}
        self.earlier: dict[str, Series] = {}
        self.smooth = False
        self.log_scale = False
        #: Streamed points draw at most every MIN_REDRAW_S, after the frame the pump's batch paints;
        #: a key's effect draws KEY_REDRAW_DELAY_S after the key (one timer: a key's draw covers both).
        self._redraws = RateLimit(MIN_REDRAW_S, self._redraw, clock=monotonic, set_timer=self.set_timer,
                                  defer=self.call_after_refresh)
        self.draw_count = 0

    @property
    def n_points(self) -> int:
        return sum(len(s.train) + len(s.val) for s in self.series.values())

    def set_points(self, points: Iterable[dict[str, Any]]) -> None:
        """Replace the job's points (from Engine.curve) and schedule a redraw; earlier runs are dropped."""
        self.series = {}
        self.earlier = {}
        self.add_points(points, _redraw=False)
        self.redraw_now()

    def add_points(self, points: Iterable[dict[str, Any]], _redraw: bool = True) -> None:
        for p in points:
            key = series_key(p)
            s = self.series.get(key)
            if s is None:
                s = self.series[key] = Series(str(p.get("symbol") or p.get("run") or ""))
            x = p.get("step")
            tr, va = p.get("train"), p.get("val")
            if isinstance(x, int | float):
                # A run's steps only go forward (an epoch's val point shares the step of its last train point):
                # a point before the newest step, or one already taken at it, is the same point again (the
                # history read when the view opened overlaps the updates still in the pump).
                if s.last_step is not None and (x < s.last_step or (x == s.last_step and (tr, va) in s.taken_at_last)):
                    continue
                if x != s.last_step:
                    s.last_step, s.taken_at_last = float(x), set()
                s.taken_at_last.add((tr, va))
            x = float(x) if isinstance(x, int | float) else float(len(s.train) + 1)
            if isinstance(tr, int | float):
                s.train.append((x, float(tr)))
            if isinstance(va, int | float):
                ep = p.get("epoch")
                s.val.append((x, float(va), int(ep) if isinstance(ep, int | float) else None))
        if _redraw:
            self.schedule_redraw()

    def mark_stopped_early(self, symbols: Iterable[str]) -> None:
        """The runs of these symbols stopped early (the job's `<symbol>.stopped_early` metrics)."""
        syms = set(symbols)
        changed = False
        for s in self.series.values():
            if s.label in syms and not s.stopped_early:
                s.stopped_early = changed = True
        if changed:
            self.schedule_redraw()

    def set_earlier(self, runs: dict[str, list[dict[str, Any]]]) -> None:
        """Overlay earlier runs (run id -> curve.jsonl points) of the same model and symbol."""
        self.earlier = {}
        for run, pts in runs.items():
            s = self.earlier[run] = Series(run, earlier=True)
            for p in pts:
                x, tr, va = p.get("step"), p.get("train"), p.get("val")
                if not isinstance(x, int | float):
                    continue
                if isinstance(tr, int | float):
                    s.train.append((float(x), float(tr)))
                if isinstance(va, int | float):
                    s.val.append((float(x), float(va), p.get("epoch")))
        self.redraw_now()

    def toggle(self, option: str) -> bool:
        """Flip `smooth` or `log_scale`; the new value."""
        setattr(self, option, not getattr(self, option))
        self.redraw_now()
        return bool(getattr(self, option))

    def schedule_redraw(self) -> None:
        """New streamed points: drawn at most every MIN_REDRAW_S."""
        if not self.is_mounted:
            self._redraws.now()
        else:
            self._redraws.request()

    def redraw_now(self) -> None:
        """A key's effect (another job, smoothing, log axis, overlay): drawn KEY_REDRAW_DELAY_S after the
        key (after the frame that shows its other effects), not held by the streaming rate limit."""
        if not self.is_mounted:
            self._redraws.now()
        else:
            # A moment after the key: a held n/N draws only the job it stops on (each draw is a plotext build).
            self._redraws.request_in(KEY_REDRAW_DELAY_S)

    def _title(self) -> str:
        opts = [o for o, on in (("smoothed", self.smooth), ("log", self.log_scale)) if on]
        return "loss" + (f" ({', '.join(opts)})" if opts else "") + "  * best val  x early stop"

    def _redraw(self) -> None:
        self.draw_count += 1
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        plt.ylabel("log10 loss" if self.log_scale else "")
        if not self.n_points:
            plt.title(self.empty_title)
            self.refresh()
            return
        plt.title(self._title())
        cols = max(20, 2 * (self.size.width or 60))
        many = len(self.series) > 1
        for s in self.earlier.values():
            self._draw_series(s, "gray", f"earlier {s.label}", cols)
        for i, (key, s) in enumerate(self.series.items()):
            name = (s.label or key) if many else ""
            self._draw_series(s, COLORS[i % len(COLORS)], name, cols)
        self.refresh()

    def _draw_series(self, s: Series, color: str, name: str, cols: int) -> None:
        # The log axis is drawn as log10 of the values (plotext's own log scale fails on some ranges).
        plt = self.plt
        f = (lambda y: math.log10(y) if y > 0 else None) if self.log_scale else (lambda y: y)

        def mapped(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
            return [(x, fy) for x, y in points if (fy := f(y)) is not None]

        train = mapped(s.train)
        if self.smooth:
            train = _smooth(train)
        train = _thin(train, cols)
        lead = f"{name} " if name else ""
        if train:
            plt.plot([p[0] for p in train], [p[1] for p in train], label=None if s.earlier else f"{lead}train",
                     marker="braille", color=color)
        val = mapped((x, y) for x, y, _ in s.val)
        if val:
            plt.plot([p[0] for p in val], [p[1] for p in val], label=None if s.earlier else f"{lead}val",
                     marker="braille" if s.earlier else "dot", color=color)
        best = s.best()
        if s.earlier or best is None:
            return
        for (x, y), mark in (((best[0], best[1]), "*"), ((s.val[-1][0], s.val[-1][1]), "x" if s.stopped_early else "")):
            fy = f(y)
            if mark and fy is not None:
                plt.scatter([x], [fy], marker=mark, color=color)
