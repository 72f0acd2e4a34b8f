"""Per-window forecasts of a validate/compare job: what the Forecast view plots.

Why a file written by the job, not forecasts recomputed when the view opens: the picture must show
the very forecasts the job scored (same seed, config, samples, calibration), and the job already
holds them, so keeping them costs one quantile pass and a few hundred KiB; recomputing would load a
model (seconds, a GPU slot) to draw a chart, and could differ. The console never runs a model.

One file per job, symbol and horizon: `<workspace>/forecasts/<job id>/<SYMBOL>-h<H>.npz`
(`Workspace.forecast_file`), a NumPy archive read with `allow_pickle=False` (nothing in it is
executed). It holds a JSON header (`ForecastFile`, validated on read) and, per span ("val",
"test"), the windows' origins, the actual closes of each window (the last `history` context rows
and then the H targets) with their times, and per model its point forecast and 10 %/90 % sample
quantiles over the H targets (`array_name` spells every array's name).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationError

from store.atomic import atomic_write_bytes
from store.records import Metrics, Record, WindowSpec
from store.storage import StoreError

SPANS: tuple[str, ...] = ("val", "test")
#: Context rows kept before each window's origin (the view shows them left of the origin line).
HISTORY_ROWS = 48
QUANTILES: tuple[float, float] = (0.1, 0.9)
META_KEY = "meta"
FILE_VERSION = 1

ArrayKind = Literal["origins", "time", "actual", "point", "q10", "q90"]


class ForecastFileError(StoreError):
    """A forecast file that is missing, unreadable or not what its header says."""


def array_name(span: str, kind: ArrayKind, model_index: int | None = None) -> str:
    """`val.origins`, `val.time`, `val.actual` (shared by the models), `test.2.point` (model 2)."""
    return f"{span}.{kind}" if model_index is None else f"{span}.{model_index}.{kind}"


class ForecastModel(Record):
    """One forecaster in the file (a model with its config, naive's variant, an ensemble)."""

    KIND: ClassVar[str] = "forecast model"
    name: str
    preset: str = "tiny"
    source: str | None = None  # pick | default | ensemble | selected on val
    config: dict[str, Any] = Field(default_factory=dict)
    validation: Metrics = Field(default_factory=Metrics)
    test: Metrics = Field(default_factory=Metrics)


class ForecastFile(Record):
    """The header: what the arrays are forecasts of, made by which job, on which windows."""

    KIND: ClassVar[str] = "forecast file"
    version: int = FILE_VERSION
    symbol: str
    horizon: int = Field(ge=1)
    context: int | None = None
    job_id: str
    job_kind: str
    history: int = Field(ge=0)
    naive_method: str | None = None
    windows: dict[str, WindowSpec]  # "val"/"test" -> the windows' spec (the metrics' windows)
    models: list[ForecastModel]
    created_at: float

    def model_index(self, name: str, preset: str | None = None) -> int | None:
        for i, m in enumerate(self.models):
            if m.name == name and (preset is None or m.preset == preset):
                return i
        return None


@dataclass
class WindowPlot:
    """One window of one model, ready to draw: x < 0 are context rows, x ≥ 0 the targets."""

    offsets: np.ndarray  # int [T + H]: row offset from the origin
    times: np.ndarray  # datetime64[ns] [T + H]
    actual: np.ndarray  # [T + H]
    point: np.ndarray  # [H]
    q10: np.ndarray  # [H]
    q90: np.ndarray  # [H]
    naive: np.ndarray | None  # [H], the naive reference's point forecast (None: not in the file)
    origin_row: int


@dataclass
class WindowForecasts:
    meta: ForecastFile
    arrays: dict[str, np.ndarray]
    path: Path

    def count(self, span: str) -> int:
        return int(self.arrays[array_name(span, "origins")].shape[0])

    def window(self, span: str, index: int, model: int) -> WindowPlot:
        h, t = self.meta.horizon, self.meta.history
        a = self.arrays
        naive = self.meta.model_index("naive")
        actual = a[array_name(span, "actual")][index]
        return WindowPlot(
            offsets=np.arange(-t, h), times=a[array_name(span, "time")][index].astype("datetime64[ns]"),
            actual=actual, point=a[array_name(span, "point", model)][index],
            q10=a[array_name(span, "q10", model)][index], q90=a[array_name(span, "q90", model)][index],
            naive=None if naive is None else a[array_name(span, "point", naive)][index],
            origin_row=int(a[array_name(span, "origins")][index]),
        )


def write_forecasts(path: Path, meta: ForecastFile, arrays: dict[str, np.ndarray]) -> Path:
    """Write the archive atomically (a reader sees the old file or the new one)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{META_KEY: np.array(json.dumps(meta.to_doc()))}, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_forecasts(path: Path) -> WindowForecasts:
    """Load and check a forecast file: header valid, every array present with the header's shapes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ForecastFileError(f"no forecast file {path}") from None
    except (OSError, ValueError) as exc:
        raise ForecastFileError(f"forecast file {path} is unreadable ({exc})") from None
    try:
        meta = ForecastFile.model_validate(json.loads(str(arrays.pop(META_KEY))))
    except (KeyError, ValueError, ValidationError) as exc:
        raise ForecastFileError(f"forecast file {path} has no valid header ({exc})") from None
    h, t = meta.horizon, meta.history
    for span, spec in meta.windows.items():
        w = spec.count
        want = {array_name(span, "origins"): (w,), array_name(span, "time"): (w, t + h),
                array_name(span, "actual"): (w, t + h)}
        for i in range(len(meta.models)):
            for kind in ("point", "q10", "q90"):
                want[array_name(span, kind, i)] = (w, h)
        for name, shape in want.items():
            got = arrays.get(name)
            if got is None or got.shape != shape:
                raise ForecastFileError(f"forecast file {path}: array {name} is "
                                        f"{'missing' if got is None else got.shape}, expected {shape}")
    return WindowForecasts(meta=meta, arrays=arrays, path=path)


def quantile_bands(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q10, q90) over the samples axis of [W, S, H] (numpy.quantile, as coverage80 uses)."""
    q = np.quantile(np.asarray(samples, dtype=np.float64), QUANTILES, axis=1)
    return q[0], q[1]
