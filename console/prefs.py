"""The console's per-user preferences (theme, the start-run form's last kind), kept between runs.

Why a user file, not the workspace: they are how one person likes the console, the same on every
workspace. Where: `$FORECAST_CONSOLE_PREFS`, else `$XDG_CONFIG_HOME/forecast-console/console.json`
(`~/.config/...`). A missing or unreadable file means the defaults; a failed write is ignored (a
preference is never worth an error). Written atomically (store.atomic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from store.atomic import atomic_write_json

ENV_PREFS = "FORECAST_CONSOLE_PREFS"


class Prefs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    theme: str | None = None
    run_kind: str | None = None


def prefs_path() -> Path:
    if os.environ.get(ENV_PREFS):
        return Path(os.environ[ENV_PREFS]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "forecast-console" / "console.json"


def load_prefs() -> Prefs:
    try:
        return Prefs.model_validate(json.loads(prefs_path().read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError):
        return Prefs()


def save_prefs(**changes: str | None) -> None:
    """Merge `changes` into the file (other keys kept)."""
    merged = load_prefs().model_copy(update=changes)
    path = prefs_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, merged.model_dump())
    except OSError:
        pass
