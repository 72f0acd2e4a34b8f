"""Process-wide state a job can change and the next job in the same process must not see.

A pooled (warm) worker runs many jobs in one interpreter. Everything below is global to the
process, so a job that changes it would leak into the next: the working directory, environment
variables, torch's thread count and grad mode, and the global random generators (numpy, `random`,
torch). `Baseline.capture()` records the state right after the worker started; `restore()` puts
it back before each job and reseeds every global generator from fresh OS entropy, which is what a
new process would have. Tasks seed their own generators explicitly (`seed` params), so reseeding
never changes a result; it only stops one job's seed deciding another's draws.

`probe()`/`mutate()` serve the worker's test hook (FORECAST_TEST_HOOKS=1): a job that reports the
state it sees, and one that changes all of it.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from engine import threads as thread_caps


def loaded(name: str) -> Any:
    """The module if this process has finished importing it, else None (never imports it: naive
    jobs stay torch-free; a warm worker may be importing it in a background thread right now)."""
    mod = sys.modules.get(name)
    spec = getattr(mod, "__spec__", None)
    if mod is None or getattr(spec, "_initializing", False):
        return None
    return mod


def _torch() -> Any:
    return loaded("torch")


@dataclass
class Baseline:
    cwd: str
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def capture(cls) -> Baseline:
        return cls(cwd=os.getcwd(), env=dict(os.environ))

    def restore(self, env: dict[str, str] | None = None, threads: int | None = None) -> None:
        """Back to the captured state, with `env` (the job's environment) applied on top."""
        os.chdir(self.cwd)
        target = dict(self.env if env is None else env)
        for k in [k for k in os.environ if k not in target]:
            del os.environ[k]
        for k, v in target.items():
            if os.environ.get(k) != v:
                os.environ[k] = v
        reseed()
        torch = _torch()
        if torch is not None:
            torch.set_grad_enabled(True)
        thread_caps.apply(threads if threads is not None else thread_caps.from_env(target))


def reseed() -> None:
    """Fresh OS entropy for every global generator, as a new process would have."""
    random.seed()
    np = loaded("numpy")
    if np is not None:
        np.random.seed(None)
    torch = _torch()
    if torch is not None:
        torch.seed()


def probe() -> dict[str, Any]:
    """What a job sees (test hook `probe`): first the threads running beside it and the engine modules
    already loaded (before this probe imports anything), then the global state."""
    seen = {"threads": sorted(t.name for t in threading.enumerate()),
            "modules": sorted(m for m in sys.modules if m.startswith("engine."))}
    import numpy as np
    import torch

    return {**seen, "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"), "cwd": os.getcwd(),
            "grad_enabled": torch.is_grad_enabled(), "marker": os.environ.get("FORECAST_TEST_MARKER"),
            "np_draw": float(np.random.random()), "torch_draw": float(torch.rand(1).item()),
            "py_draw": random.random()}


#: The seed `mutate` sets; a later job whose draws equal these seeded draws saw the leak.
MUTATE_SEED = 12345


def mutate() -> None:
    """Change every piece of global state listed above (test hook `mutate`)."""
    import numpy as np
    import torch

    torch.set_num_threads(max(2, torch.get_num_threads() + 1))
    torch.set_grad_enabled(False)
    np.random.seed(MUTATE_SEED)
    random.seed(MUTATE_SEED)
    torch.manual_seed(MUTATE_SEED)
    os.environ["FORECAST_TEST_MARKER"] = "left-behind"
    os.chdir("/")


__all__ = ["MUTATE_SEED", "Baseline", "mutate", "probe", "reseed"]
