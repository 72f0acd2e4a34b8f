"""Use a promoted decision: load `hyperparams/<model>/<SYMBOL>.json` (+ its adapter) and forecast.

Why here and not in trading code: the promoted numbers are only worth something if the forecast
trading code gets is the one validation scored. So this module runs the *same* code path as
validation (`engine.evaluation.ModelCache` → `SampleBank` → `run_config`, with the recorded seed,
context, sample count and aggregation) and reads nothing but the promoted folder and the
symbol's CSV — the workspace may be deleted. `PromotedModel.score()` rebuilds the recorded
validation/test windows from the document and reproduces the promoted metrics.

    from engine.serve import load_promoted
    m = load_promoted("toto", "SPY")
    frame = m.forecast("trainingdata/SPY.csv")   # timestamp, point, q10, q50, q90 for the next H rows
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine import evaluation as ev
from store.best_config import best_config_path, load_best_config, load_winner, promoted_horizon
from store.handoff import verify_adapter
from store.records import Metrics, WindowSpec

if TYPE_CHECKING:
    import pandas as pd

    from engine.data import Series, Windows

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)


class ServeError(ValueError):
    """A promoted document that cannot be used as it is (the message says what to do)."""


def _series(frame_or_csv: Any, symbol: str) -> Series:
    """A validated Series from a path, a DataFrame (validated like a CSV) or a Series."""
    from engine.data import Series, load_csv

    if isinstance(frame_or_csv, Series):
        return frame_or_csv
    if isinstance(frame_or_csv, str | os.PathLike):
        return load_csv(Path(frame_or_csv), symbol)
    import pandas as pd

    if isinstance(frame_or_csv, pd.DataFrame):
        with tempfile.TemporaryDirectory() as d:  # the loader's checks, not a second set of them
            p = Path(d) / f"{symbol}.csv"
            frame_or_csv.to_csv(p, index=False)
            return load_csv(p, symbol)
    raise ServeError(f"expected a CSV path, a DataFrame or an engine.data.Series, got {type(frame_or_csv).__name__}")


def future_times(timestamps: np.ndarray, horizon: int) -> np.ndarray:
    """The next `horizon` bar times on the series' calendar: every day when it has weekend bars
    (crypto), else business days."""
    import pandas as pd

    ts = pd.DatetimeIndex(timestamps)
    last = ts[-1]
    if bool((ts.dayofweek >= 5).any()):
        out = pd.date_range(last + pd.Timedelta(days=1), periods=horizon, freq="D")
    else:
        out = pd.bdate_range(last + pd.offsets.BDay(1), periods=horizon)
    return out.to_numpy(dtype="datetime64[ns]")


def next_window(series: Series, context: int, horizon: int) -> Windows:
    """One window whose context is the last `context` rows and whose targets are the H unseen rows."""
    from engine.data import Windows

    n = series.n_rows
    if n < context:
        raise ServeError(f"{series.symbol} has {n} rows; the promoted decision needs a context of {context}")
    return Windows(
        symbol=series.symbol, span="future", context_len=int(context), horizon=int(horizon),
        origins=np.array([n], dtype=np.int64), context=series.values[None, n - context:, :].copy(),
        context_time=series.timestamps[None, n - context:].copy(),
        target_time=future_times(series.timestamps, horizon)[None, :],
        targets=np.full((1, horizon), np.nan), scale=np.full(1, np.nan),
    )


@dataclass
class PromotedModel:
    """A promoted decision, ready to forecast (the model loads on first use)."""

    doc: dict[str, Any]
    path: Path
    device: str = "cpu"
    _bank: Any = field(default=None, repr=False)
    _adapter: tuple[Path | None] | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return str(self.doc["model"])

    @property
    def symbol(self) -> str:
        return str(self.doc["symbol"])

    @property
    def horizon(self) -> int:
        h = promoted_horizon(self.doc)
        if h is None:
            raise ServeError(f"{self.path} records no horizon; re-promote it with this version")
        return h

    @property
    def context(self) -> int:
        c = self.doc.get("context") or (self.doc.get("windows") or {}).get("context")
        if not isinstance(c, int):
            raise ServeError(f"{self.path} records no context length; re-promote it with this version")
        return c

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.doc["config"])

    @property
    def seed(self) -> int:
        return int(self.doc.get("seed") or 0)

    def adapter_dir(self) -> Path | None:
        """The promoted adapter folder, its files checked against their sha256 (once per object)."""
        if self._adapter is None:
            a = self.doc.get("adapter")
            self._adapter = (verify_adapter(self.path.parent, a),) if a else (None,)
        return self._adapter[0]

    def bank(self) -> ev.SampleBank:
        """The loaded model (ModelLoadError with the download command when weights are missing)."""
        if self._bank is None:
            preset = str(self.doc.get("preset") or "tiny")
            # the base weights it was scored on (a folder or hub id; an adapter's own record fills gaps)
            cache = ev.ModelCache(preset=preset, device=self.device, weights=self.doc.get("weights") or {})
            self._bank = cache.bank(self.model, adapter=self.adapter_dir(), method=self.config.get("method"))
        return self._bank

    def _run(self, key: str, windows: Windows) -> ev.ConfigOutput:
        return ev.run_config(self.bank(), key, windows, self.config, seed=self.seed)

    def forecast(self, frame_or_csv: Any) -> pd.DataFrame:
        """Point forecast and 10/50/90 % quantiles for the H rows after the last row of the data."""
        import pandas as pd

        s = _series(frame_or_csv, self.symbol)
        w = next_window(s, self.context, self.horizon)
        out = self._run("forecast", w)
        q = np.quantile(out.samples[0], QUANTILES, axis=0)  # [3, H]
        return pd.DataFrame({"timestamp": pd.DatetimeIndex(w.target_time[0]), "point": out.point[0],
                             "q10": q[0], "q50": q[1], "q90": q[2]})

    def windows(self, series: Series, span: str) -> Windows:
        """The recorded validation or test windows, rebuilt from the document's spans and window spec."""
        from engine.data import Spans, make_windows

        wins = self.doc.get("windows") or {}
        spec_doc = wins.get("validation" if span == "val" else "test")
        if not wins.get("spans") or not spec_doc:
            raise ServeError(f"{self.path} records no {span} windows (promoted from a run, or an older version)")
        spans = Spans.from_dict(wins["spans"])
        if spans.n_rows > series.n_rows:
            raise ServeError(f"{series.symbol} has {series.n_rows} rows, fewer than the {spans.n_rows} it was "
                             "scored on")
        spec = WindowSpec.model_validate(spec_doc)
        every = make_windows(series, spans, span, self.context, self.horizon, stride=1)
        want = set(range(int(spec.first_origin or 0), int(spec.last_origin or 0) + 1, spec.stride))
        idx = np.flatnonzero([int(o) in want for o in every.origins])
        got = every.subset(idx)
        if got.n != spec.count:
            raise ServeError(f"rebuilt {got.n} {span} windows, the document records {spec.count}: the data "
                             "changed since it was promoted")
        return got

    def score(self, frame_or_csv: Any, span: str = "test") -> Metrics:
        """The metrics of this decision on its recorded windows (reproduces the promoted numbers)."""
        s = _series(frame_or_csv, self.symbol)
        w = self.windows(s, span)
        out = self._run(span, w)
        m = ev.score(w, out.samples, out.point, ev.naive_point(w))
        return Metrics.model_validate({**m, "latency_per_forecast_s": out.latency_per_forecast_s})


def load_promoted(model: str, symbol: str, hyperparams_dir: str | os.PathLike[str] | None = None,
                  *, device: str = "cpu") -> PromotedModel:
    """The promoted decision for (model, symbol): FileNotFoundError when nothing is promoted,
    ValueError for a bad document or an adapter whose files do not match their hashes."""
    doc = load_best_config(model, symbol, hyperparams_dir)
    m = PromotedModel(doc=doc, path=best_config_path(model, symbol, hyperparams_dir), device=device)
    m.adapter_dir()  # a missing or altered adapter is an error now, not at the first forecast
    return m


def load_winner_model(symbol: str, horizon: int, hyperparams_dir: str | os.PathLike[str] | None = None,
                      *, device: str = "cpu") -> PromotedModel:
    """The promoted winner across models for `symbol` at `horizon` (store.best_config.load_winner)."""
    doc = load_winner(symbol, horizon, hyperparams_dir)
    return load_promoted(doc["model"], doc["symbol"], hyperparams_dir, device=device)


def promoted_for(symbol: str, model: str | None, horizon: int | None,
                 hyperparams_dir: str | os.PathLike[str] | None = None, *, device: str = "cpu") -> PromotedModel:
    """What `forecast-console forecast` uses: the model's promotion (checked against --horizon), or the
    winner at --horizon, or — with neither — the only horizon the symbol is promoted at."""
    from store.best_config import hyperparams_root

    if model is not None:
        m = load_promoted(model, symbol, hyperparams_dir, device=device)
        if horizon is not None and m.horizon != horizon:
            raise ServeError(f"{model}/{m.symbol} is promoted at h={m.horizon}, not h={horizon}; promote a "
                             f"decision made at h={horizon} or drop --horizon")
        return m
    if horizon is None:
        root = hyperparams_root(hyperparams_dir)
        sym = symbol.strip().upper()
        hs = sorted({h for d in (root.iterdir() if root.is_dir() else []) if (d / f"{sym}.json").is_file()
                     and (h := promoted_horizon(load_best_config(d.name, sym, root))) is not None})
        if not hs:
            raise FileNotFoundError(f"nothing is promoted for {sym} under {root}; promote a decision first "
                                    f"(`forecast-console promote --model M --symbol {sym} --horizon H`)")
        if len(hs) > 1:
            raise ServeError(f"{sym} is promoted at horizons {', '.join(map(str, hs))}: say which with --horizon "
                             "(or --model)")
        horizon = hs[0]
    return load_winner_model(symbol, horizon, hyperparams_dir, device=device)
