"""Where things live on disk: the shipped data, the workspace, the promoted configs.

Resolution order is flag > environment variable > default, so scripts, tests and the console
agree without passing paths everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root when installed editable (setup.sh does that); the shipped data lives here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENV_WORKSPACE = "FORECAST_WORKSPACE"
ENV_DATA = "FORECAST_DATA"
ENV_HYPERPARAMS = "FORECAST_HYPERPARAMS"


def workspace_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """The workspace: `--workspace`, else $FORECAST_WORKSPACE, else ./forecast-runs."""
    raw = flag or os.environ.get(ENV_WORKSPACE) or "forecast-runs"
    return Path(raw).expanduser().resolve()


def shipped_data_dir() -> Path:
    """The `trainingdata/` folder: $FORECAST_DATA, else ./trainingdata if present, else the repo's."""
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env).expanduser().resolve()
    local = Path.cwd() / "trainingdata"
    if local.is_dir():
        return local.resolve()
    return PROJECT_ROOT / "trainingdata"


def data_dirs(workspace: Path | None = None) -> list[Path]:
    """Folders searched for `SYMBOL.csv`, in order: shipped data, then `<workspace>/data`.

    A workspace CSV with the same symbol as a shipped one wins (users override our synthetic data).
    """
    dirs = [shipped_data_dir()]
    if workspace is not None and (workspace / "data").is_dir():
        dirs.append(workspace / "data")
    return dirs


def hyperparams_dir(flag: str | os.PathLike[str] | None = None) -> Path:
    """Promoted configs: `--hyperparams`, else $FORECAST_HYPERPARAMS, else ./hyperparams."""
    raw = flag or os.environ.get(ENV_HYPERPARAMS) or "hyperparams"
    return Path(raw).expanduser().resolve()
