"""`python -m engine.pool_worker`: a warm worker that runs short jobs one after another.

Why: a naive `validate` job spent ~1–2 s starting an interpreter and importing numpy/pandas/torch
before doing ~0.1 s of work; 24 of them queued at once took ×11.7 the wall of one job covering the
same symbols. A warm worker pays that once and then runs each job through the very same
`engine.worker.run_job`, so a job's folder, events, heartbeats, result, `exit.json` and exit code
are exactly those of a one-process-per-job worker.

Protocol (engine.backends.pool is the other end): one JSON object per line on stdin,
`{"job_dir": ..., "env": {...}}`; after each job one line `done <job_id> <code>` on stdout (it wakes
the engine's poller; the outcome itself is in the job's `exit.json`). End of stdin (the engine
closed the pool, or died) ends the worker after the job in hand.

Per job: the process state is reset to the start-up baseline with the job's environment
(engine.process_state: cwd, env, torch threads and grad mode, reseeded RNGs); stdout/stderr go to
the job's `stderr.log`; a watcher thread turns the job's `cancel.request` file into the SIGTERM
that a one-process worker would get (cooperative cancel, then a forced exit after the grace, the
engine killing the worker if even that fails); a cancelled job's worker always ends (a cancel may
interrupt a task anywhere) and is replaced; children the job left are killed.
A crash of the interpreter (segfault, OOM kill, `os._exit`) ends only this worker: the engine
fails the job it was running and starts a new worker for the next one.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from engine import process_state
from engine.data.listing import job_listing
from engine.forecasters import cache as model_cache
from engine.jobs import JobDir
from engine.worker import EXIT_CANCELLED, run_job

#: Imported at start, before the first job is read, so every job finds them loaded. Not torch (~2.5 s
#: of CPU): a naive job never needs it, and the first model job imports it once for the worker's life.
#: Never in a background thread: a job's own imports (torch, peft, transformers' lazy modules) would
#: run beside other imports in one interpreter, and import-time code that is not thread-safe
#: (transformers' `_LazyModule.__getattr__`, numpy's environment handling) then fails by timing, e.g.
#: `ModuleNotFoundError: Could not import module 'BloomPreTrainedModel'` as peft imports transformers.
#: In the main thread it costs the first job nothing it would not pay itself: it needs these too.
PRELOAD: tuple[str, ...] = (
    "numpy", "pandas", "engine.data.loading", "engine.data.windows", "engine.metrics", "engine.evaluation",
    "engine.tasks.baseline", "engine.tasks.validate", "engine.tasks.compare", "engine.tasks.regression",
    "engine.tasks.calibrate",
)
CANCEL_POLL_S = 0.05


def _preload() -> None:
    for name in PRELOAD:
        with contextlib.suppress(Exception):  # a missing optional package only costs the job its import
            importlib.import_module(name)


def _watch_cancel(marker: Path, done: threading.Event) -> None:
    while not done.wait(CANCEL_POLL_S):
        if marker.exists():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler run_job installed acts on it
            return


def _kill_children() -> None:
    """Processes a job started and left behind (a one-process worker's group is killed on exit)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child.kill()


def _redirect(path: Path | None, saved: tuple[int, int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if path is None:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_one(job_dir: Path, env: dict[str, str], baseline: process_state.Baseline,
            report: int, saved: tuple[int, int]) -> int:
    jd = JobDir(Path(job_dir))
    done = threading.Event()
    watcher = threading.Thread(target=_watch_cancel, args=(jd.cancel, done), name="cancel-watch", daemon=True)
    _redirect(jd.stderr, saved)
    code = 1
    try:
        # A failure here leaves the process in an unknown state: it propagates and ends the worker,
        # so the engine fails this job (traceback in its stderr.log) and starts a fresh worker.
        baseline.restore(env)
        watcher.start()
        with job_listing():
            code = run_job(jd.path)
    finally:
        done.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _redirect(None, saved)
        _kill_children()
        with contextlib.suppress(OSError):
            os.write(report, f"done {jd.job_id} {code}\n".encode())
    return code


def main() -> int:
    # Our stdout is the engine's wake-up pipe; job output never goes there (see _redirect).
    report = os.dup(1)
    saved = (os.dup(2), os.dup(2))  # between jobs, stdout and stderr go to the pool's log
    os.dup2(saved[1], 1)
    baseline = process_state.Baseline.capture()
    model_cache.enable()  # base models stay loaded between jobs, bounded (FORECAST_MODEL_CACHE_MB)
    _preload()  # the engine's first request waits in the pipe meanwhile
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
            job_dir, env = Path(msg["job_dir"]), dict(msg["env"])
        except (ValueError, KeyError, TypeError) as exc:
            print(f"pool worker: bad request {line[:200]!r}: {exc}", file=sys.stderr, flush=True)
            continue
        if run_one(job_dir, env, baseline, report, saved) == EXIT_CANCELLED:
            # A cancel can interrupt a task anywhere (outside its cooperative regions): the process
            # state is not known to be clean, so this worker ends and the next job gets a new one.
            return 0
    return 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # like engine.worker: no teardown that a thread a task left behind could hang
