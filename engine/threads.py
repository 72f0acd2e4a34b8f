"""How many compute threads a job may use: the cores it was admitted for, never the whole machine.

Why: torch and the BLAS libraries default to one thread per core *per process*, so two CPU slots
on a 2-core machine ran 4+ busy threads and four small train jobs took ~3× longer than with one
thread each (oversubscription, cache thrash). The scheduler gives each CPU slot an equal share of
the cores (`share`), the engine puts that count into the worker's environment (`thread_env`:
OpenMP/MKL/OpenBLAS read it when they initialise), and the worker also sets torch's intra-op pool
(`apply`) because torch may already be initialised in a long-lived (pooled) worker.

GPU jobs and coordinators (sweep, pipeline) get one thread: their work is on the GPU or in child
jobs, so the CPU slots keep the machine's cores between them.

Pure standard library: the engine and the CLI import this without torch.
"""

from __future__ import annotations

import os
import sys

ENV_THREADS = "FORECAST_THREADS"

#: Environment variables the numeric libraries read for their thread-pool size at start-up.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def machine_cores() -> int:
    """Cores this process may run on (CPU affinity / cgroup-pinned set), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def share(cpu_slots: int, cores: int | None = None) -> int:
    """Threads for one CPU slot: an equal share of the cores, at least one."""
    return max(1, (cores or machine_cores()) // max(1, cpu_slots))


def thread_env(threads: int) -> dict[str, str]:
    """Environment entries that cap a worker process at `threads` compute threads."""
    n = str(max(1, int(threads)))
    return {ENV_THREADS: n, **{k: n for k in THREAD_ENV_VARS}}


def from_env(env: dict[str, str] | None = None) -> int | None:
    """The cap the engine gave this worker (FORECAST_THREADS), None when it gave none."""
    raw = (env if env is not None else os.environ).get(ENV_THREADS)
    try:
        return max(1, int(raw)) if raw else None
    except ValueError:
        return None


def apply(threads: int | None = None) -> int | None:
    """Cap torch's intra-op pool at `threads` (default: FORECAST_THREADS) when torch is loaded.

    Does not import torch: a naive job never pays for it, and a task that imports torch later
    starts with the OMP_NUM_THREADS the worker was launched with.
    """
    n = threads if threads is not None else from_env()
    if n is None:
        return None
    torch = sys.modules.get("torch")
    if getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return n  # being imported by another thread: it starts with OMP_NUM_THREADS from our env
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(n)
    return n


__all__ = ["ENV_THREADS", "THREAD_ENV_VARS", "apply", "from_env", "machine_cores", "share", "thread_env"]
