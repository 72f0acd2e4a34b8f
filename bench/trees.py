"""Running a benchmark's children against this checkout and an earlier one, side by side.

Why one module: every `--before REF` benchmark exports REF the same way and must start its children
alike in both trees (same environment, same bytecode handling), or the comparison measures the setup.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def export_ref(ref: str, dest: Path) -> Path:
    """REF's files in `dest` via `git archive` (no git worktree left to clean up)."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar.stdout, check=True)
    return dest


def child_env(tree: Path, *, bytecode_cache: bool = True) -> dict[str, str]:
    """A child's environment: `tree` first on the path, one thread. With `bytecode_cache` the project's
    modules run from cached bytecode as an installed package's do (pip compiles them; a checkout
    writes __pycache__ on its first run): PYTHONDONTWRITEBYTECODE, often set in agents' and CI shells,
    would otherwise make every run compile the project's modules from source."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def children_cpu() -> float:
    """User + system CPU seconds of every child waited for so far (take differences)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
