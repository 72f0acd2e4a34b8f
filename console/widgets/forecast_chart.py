"""One forecast window drawn with plotext: actual closes around the origin, the point forecast,
its 10 %/90 % sample quantiles, naive's forecast, and a vertical line at the origin.

Why row offsets on the x axis (with the dates as tick labels): plotext places x values linearly,
and trading days are not evenly spaced in calendar time; offsets keep every bar one column apart
and put the origin (row 0, the first target) at one known x.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from store.forecasts import WindowPlot

ACTUAL, FORECAST, BAND, NAIVE, ORIGIN = "blue", "orange", "orange", "gray", "red"


def tick_labels(plot: WindowPlot) -> tuple[list[float], list[str]]:
    """Ticks at the first context row, mid-context, the origin and the last target, labelled with
    the rows' dates (MM-DD; HH:MM for intraday bars). numpy is imported here, not at the top: the
    console's start (first frame) does not pay for it."""
    import numpy as np

    off = plot.offsets
    t = int(np.flatnonzero(off == 0)[0])
    idx = sorted({0, t // 2, t, len(off) - 1})
    days = plot.times.astype("datetime64[D]")
    intraday = bool(np.any(days[1:] == days[:-1]))
    fmt = (lambda v: str(v)[11:16]) if intraday else (lambda v: str(v)[5:10])
    return [float(off[i]) for i in idx], [fmt(plot.times[i]) for i in idx]


class ForecastChart(PlotextPlot):
    DEFAULT_CSS = """
    ForecastChart {
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.draw_count = 0
        self.shown: WindowPlot | None = None

    def show(self, plot: WindowPlot | None, title: str, model_label: str) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        self.shown = plot
        self.draw_count += 1
        plt.title(title)
        if plot is None:
            self.refresh()
            return
        x_all = plot.offsets.astype(float).tolist()
        x_fc = plot.offsets[plot.offsets >= 0].astype(float).tolist()
        plt.plot(x_fc, plot.q90.astype(float).tolist(), color=BAND, marker="dot", label="q10–q90 band")
        plt.plot(x_fc, plot.q10.astype(float).tolist(), color=BAND, marker="dot")
        if plot.naive is not None:
            plt.plot(x_fc, plot.naive.astype(float).tolist(), color=NAIVE, marker="braille", label="naive")
        plt.plot(x_all, plot.actual.astype(float).tolist(), color=ACTUAL, marker="braille", label="actual")
        plt.plot(x_fc, plot.point.astype(float).tolist(), color=FORECAST, marker="braille", label=model_label)
        plt.vline(0, ORIGIN)
        ticks, labels = tick_labels(plot)
        plt.xticks(ticks, labels)
        plt.xlabel("origin ┃ = first target row")
        self.refresh()
