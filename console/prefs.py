"""The console's per-user preferences (theme, the start-run form's last kind), kept between runs.

Why a user file, not the workspace: they are how one person likes the console, the same on every
workspace. Where: `$FORECAST_CONSOLE_PREFS`, else `$XDG_CONFIG_HOME/forecast-console/console.json`
(`~/.config/...`). A missing or unreadable file, or one whose known keys are not strings, means the
defaults; unknown keys are ignored; a failed write is ignored (a preference is never worth an error).
Written atomically (store.atomic).

Why a dataclass and not a pydantic model like the project's other records: the theme is read before
the console's first frame, and pydantic's import and first model cost ~0.15 s of that 1 s budget
(nothing else before the first frame needs pydantic); two optional strings need only the type check
in `Prefs.from_doc`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.atomic import atomic_write_json

ENV_PREFS = "FORECAST_CONSOLE_PREFS"


@dataclass(frozen=True)
class Prefs:
    theme: str | None = None
    run_kind: str | None = None

    @classmethod
    def from_doc(cls, doc: Any) -> Prefs:
        """The known keys of a JSON object (unknown ones ignored); ValueError when it is not an
        object or a known key holds anything but a string or null."""
        if not isinstance(doc, dict):
            raise ValueError(f"preferences must be a JSON object, not {type(doc).__name__}")
        known = {f.name: doc[f.name] for f in dataclasses.fields(cls) if f.name in doc}
        for name, value in known.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"preference {name!r} must be a string, not {type(value).__name__}")
        return cls(**known)

    def to_doc(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


def prefs_path() -> Path:
    if os.environ.get(ENV_PREFS):
        return Path(os.environ[ENV_PREFS]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "forecast-console" / "console.json"


def load_prefs() -> Prefs:
    try:
        return Prefs.from_doc(json.loads(prefs_path().read_text(encoding="utf-8")))
    except (OSError, ValueError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return Prefs()


def save_prefs(**changes: str | None) -> None:
    """Merge `changes` into the file (the other preferences kept); an unknown name is a TypeError."""
    merged = dataclasses.replace(load_prefs(), **changes)
    path = prefs_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, merged.to_doc())
    except OSError:
        pass
