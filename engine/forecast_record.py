"""Keep the per-window forecasts a validate/compare job scored, for the console's Forecast view.

Why here (the worker side): the job holds the samples and points it scored; this turns them into
the archive `store.forecasts` defines (point, 10 %/90 % quantiles, the actual closes around each
window) without another model call. A failure to write is logged and the job's result stands: the
picture is a convenience, the scores are the decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from store.forecasts import (
    HISTORY_ROWS,
    ForecastFile,
    ForecastModel,
    array_name,
    quantile_bands,
    write_forecasts,
)
from store.workspace import Workspace

if TYPE_CHECKING:
    from engine.data import Windows
    from engine.evaluation import EvalSetup

#: span -> (point [W, H], samples [W, S, H]) of one forecaster
Outputs = Mapping[str, tuple[np.ndarray, np.ndarray]]


def _span_arrays(span: str, windows: Windows, history: int) -> dict[str, np.ndarray]:
    t = min(history, windows.context_len)
    times = np.concatenate([windows.context_time[:, windows.context_len - t:], windows.target_time], axis=1)
    actual = np.concatenate([windows.context_close[:, windows.context_len - t:], windows.targets], axis=1)
    return {array_name(span, "origins"): np.asarray(windows.origins, dtype=np.int64),
            array_name(span, "time"): times.astype("datetime64[ns]").astype(np.int64),
            array_name(span, "actual"): actual.astype(np.float64)}


def build(setup: EvalSetup, job_id: str, job_kind: str, models: Sequence[tuple[ForecastModel, Outputs]],
          naive_method: str | None = None) -> tuple[ForecastFile, dict[str, np.ndarray]]:
    history = min(HISTORY_ROWS, setup.context)
    spans = {"val": setup.val, "test": setup.test}
    info = setup.windows_info()
    meta = ForecastFile(symbol=setup.symbol, horizon=setup.horizon, context=setup.context, job_id=job_id,
                        job_kind=job_kind, history=history, naive_method=naive_method,
                        windows={"val": info["val_windows"], "test": info["test_windows"]},
                        models=[m for m, _ in models], created_at=time.time())
    arrays: dict[str, np.ndarray] = {}
    for span, w in spans.items():
        arrays.update(_span_arrays(span, w, history))
        for i, (_, out) in enumerate(models):
            point, samples = out[span]
            q10, q90 = quantile_bands(samples)
            arrays[array_name(span, "point", i)] = np.asarray(point, dtype=np.float32)
            arrays[array_name(span, "q10", i)] = q10.astype(np.float32)
            arrays[array_name(span, "q90", i)] = q90.astype(np.float32)
    return meta, arrays


def record(workspace: Path, setup: EvalSetup, job_id: str, job_kind: str,
           models: Sequence[tuple[ForecastModel, Outputs]], *, naive_method: str | None = None,
           log: Callable[[str, str], Any] | None = None) -> Path | None:
    """Write `forecasts/<job>/<SYMBOL>-h<H>.npz`; None (and a warning in the job log) if it cannot."""
    try:
        meta, arrays = build(setup, job_id, job_kind, models, naive_method)
        return write_forecasts(Workspace(workspace).forecast_file(job_id, setup.symbol, setup.horizon), meta, arrays)
    except (OSError, ValueError) as exc:
        if log is not None:
            log(f"{setup.symbol}: per-window forecasts for the Forecast view not written: {exc}", "warning")
        return None
