"""`python -m engine.worker <job_dir>`: run one job and report through its event file.

Reads `spec.json`, appends JSON-lines events to `events.jsonl` (started, heartbeats from a thread,
whatever the task emits, then result — with the job's measured memory peaks as `usage` — or error), exits 0 on success and 1 on failure, and writes
`exit.json` with that code so an engine that is not our parent can still learn how we ended.
Started for launch n (`FORECAST_LAUNCH`), it first claims that launch (engine.launches); a launch an
engine already revoked exits at once (code 77) writing no event and no exit.json.

Only light modules are imported here; the task module (`engine.tasks.<kind>`) imports what it
needs (torch, a model package) itself, so start-up stays well under a second for naive jobs.

On SIGTERM the worker sets `ctx.cancel_event` (tasks check it at safe points) and, if the task
has not returned within the grace period, exits anyway (code 143).

Test hook: a spec param `{"_test": {"sleep": s, "steps": n, "crash": "segv|exit3|raise|enospc",
"checkpoint": true, "child": true, "stderr": "text", "ignore_term": true, "result": {...}, "mutate": true,
"probe": true, "hold": "<file>"}}` (hold: after its steps, stay running until that file exists, so that a
test can have jobs provably running at the same moment; mutate/probe: change, or report in the result
summary, process-wide state; engine.process_state) replaces the task by a scripted one, for ANY kind, but only
when the environment has FORECAST_TEST_HOOKS=1. Why: the engine's tests need real processes
that run for a while, crash in specific ways or spawn children, and the job kinds are fixed (no
"sleep" kind). Why guarded: spec params arrive from users and from the spool folder; a param
alone must never be able to make a production worker crash itself.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine import launches, process_state, threads
from engine.curve_file import curve_path
from engine.data.listing import job_listing
from engine.deaths import EXIT_DISK_FULL
from engine.events import EventWriter
from engine.jobs import JobDir, JobSpec
from engine.tasks.context import TaskContext
from engine.vram import PeakMeter, footprint_key
from store.atomic import atomic_write_json

ENV_TEST_HOOKS = "FORECAST_TEST_HOOKS"
ENV_HEARTBEAT = "FORECAST_HEARTBEAT_S"
ENV_GRACE = "FORECAST_CANCEL_GRACE_S"
ENV_DEVICE = "FORECAST_DEVICE"
EXIT_CANCELLED = 143
#: The worker's exit code when an engine revoked its launch before it claimed it (engine.launches):
#: it did nothing, and the job was queued again.
EXIT_REVOKED = 77


class Cancelled(Exception):
    """Raised by tasks (or the worker) when the job was cancelled."""


def _write_exit(job_dir: Path, code: int) -> None:
    try:
        atomic_write_json(JobDir(job_dir).exit, {"code": code, "t": time.time(), "pid": os.getpid()})
    except OSError:
        pass


def _heartbeat(events: EventWriter, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            events.heartbeat()
        except (OSError, ValueError):  # file closed at shutdown
            return


def _run_test_hook(hook: dict[str, Any], spec: JobSpec, ctx: TaskContext) -> dict[str, Any]:
    """The scripted task behind FORECAST_TEST_HOOKS=1 (see module docstring)."""
    steps = int(hook.get("steps", 1))
    pause = float(hook.get("sleep", 0.0))
    child = None
    if hook.get("child"):
        child = subprocess.Popen(["sleep", "60"])
        ctx.events.log(f"child pid {child.pid}")
        (ctx.job_dir / "child.pid").write_text(str(child.pid))
    if hook.get("stderr"):
        print(str(hook["stderr"]), file=sys.stderr, flush=True)
    crash = hook.get("crash")
    for i in range(steps):
        if ctx.cancelled():
            raise Cancelled("cancelled")
        if pause:
            ctx.cancel_event.wait(pause)
        # the steps are shared out over the symbols in turn, each symbol's curve starting at step 1
        n_sym = max(1, len(spec.symbols))
        si = i * n_sym // steps
        step = i + 1 - -(-si * steps // n_sym)
        sym = spec.symbols[si] if spec.symbols else None
        ctx.events.progress(i + 1, steps, stage="test", symbol=sym, symbol_i=si + 1, symbol_n=n_sym)
        if hook.get("checkpoint") and i == 0:  # as the train loop reports a saved state
            ctx.events.artifact("checkpoint", ctx.job_dir)
        ctx.events.loss(step=step, epoch=0, train=1.0 / step, val=1.5 / step, symbol=sym,
                        run=f"test-{sym}" if sym else None)
        if crash and i == steps // 2:
            if crash == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
                time.sleep(5)
            elif crash == "exit3":
                os._exit(3)
            elif crash == "raise":
                raise RuntimeError("test hook asked to raise")
            elif crash == "enospc":  # what a write on a full disk raises
                raise OSError(errno.ENOSPC, "No space left on device", str(curve_path(ctx.job_dir)))
    if hook.get("hold"):
        gate = Path(str(hook["hold"]))
        while not gate.exists():
            if ctx.cancel_event.wait(0.05):
                raise Cancelled("cancelled")
    if hook.get("ignore_term"):  # simulate a task that never checks the cancel flag
        while True:
            time.sleep(0.05)
    if ctx.cancelled():
        raise Cancelled("cancelled")
    if hook.get("mutate"):
        process_state.mutate()
    if hook.get("probe"):
        return {"summary": process_state.probe()}
    result = hook.get("result")
    return dict(result) if isinstance(result, dict) else {"summary": {"steps": steps}}


def run_job(job_dir: Path) -> int:
    job_dir = Path(job_dir).resolve()
    jd = JobDir(job_dir)
    spec = jd.read_spec()
    launch = launches.launch_number(os.environ)
    if launch is not None and not launches.claim(job_dir, launch):
        # Before anything is written: the job was queued again and another launch will run it.
        print(f"engine.worker: launch {launch} of job {spec.id} was revoked by an engine that found it not "
              "started; not running it", file=sys.stderr, flush=True)
        return EXIT_REVOKED
    events = EventWriter(jd.events, spec.id)
    from engine import paths

    workspace = job_dir.parent.parent
    device = os.environ.get(ENV_DEVICE, "cpu")
    ctx = TaskContext(job_id=spec.id, workspace=workspace, job_dir=job_dir, events=events,
                      device=device, data_dirs=paths.data_dirs(workspace),
                      hyperparams_dir=paths.hyperparams_dir())
    grace = float(os.environ.get(ENV_GRACE, "10"))

    task_running = threading.Event()
    timers: list[threading.Timer] = []  # forced exits pending; cancelled once the job has ended

    def on_term(signum: int, frame: Any) -> None:
        if ctx.cancel_event.is_set():
            return
        ctx.cancel_event.set()

        def force() -> None:
            events.emit("log", level="warning", msg=f"task did not stop within {grace:g}s; exiting")
            events.error(Cancelled("cancelled (forced after grace period)"))
            _write_exit(job_dir, EXIT_CANCELLED)
            os._exit(EXIT_CANCELLED)

        timer = threading.Timer(grace, force)
        timer.daemon = True
        timers.append(timer)
        timer.start()
        # Outside a cooperative region (imports, model loading, tasks that never poll) there is
        # nothing to save: abort the task now rather than wait for the grace period to force it.
        if task_running.is_set() and ctx.cooperative_depth == 0:
            raise Cancelled("cancelled")

    signal.signal(signal.SIGTERM, on_term)
    events.started()
    stop = threading.Event()
    hb = threading.Thread(target=_heartbeat, name="heartbeat", daemon=True,
                          args=(events, stop, float(os.environ.get(ENV_HEARTBEAT, "5"))))
    hb.start()

    def end_heartbeat() -> None:
        """The job's final event (result or error) is the last line its worker writes: readers take
        the file's last event as the outcome, so the heartbeat thread ends before that event."""
        stop.set()
        hb.join(timeout=10.0)

    code = 1
    meter = PeakMeter(footprint_key(spec, device.startswith("cuda")), device).start()
    try:
        task_running.set()
        hook = spec.params.get("_test")
        if isinstance(hook, dict) and os.environ.get(ENV_TEST_HOOKS) == "1":
            with ctx.cooperative_cancel():  # the hook polls the flag like a well-behaved task
                result = _run_test_hook(hook, spec, ctx)
        else:
            try:
                mod = importlib.import_module(f"engine.tasks.{spec.kind}")
            except ModuleNotFoundError as exc:
                if exc.name in (f"engine.tasks.{spec.kind}",):
                    raise RuntimeError(
                        f"no task module engine.tasks.{spec.kind} is installed; cannot run a {spec.kind} job"
                    ) from None
                raise
            threads.apply()  # the task module may have loaded torch: cap it at the admitted cores
            # Coordinators (sweep, pipeline) cancel their child jobs when cancelled, so they always
            # poll the flag themselves; other tasks are aborted at once outside their own regions.
            if getattr(mod, "COOPERATIVE_CANCEL", False):
                with ctx.cooperative_cancel():
                    result = mod.run(spec, ctx)
            else:
                result = mod.run(spec, ctx)
        task_running.clear()
        if ctx.cancelled():
            raise Cancelled("cancelled")
        payload = result if isinstance(result, dict) else {"summary": {"value": result}}
        # measured peaks (engine.vram): the scheduler reserves them for the next job of this footprint
        usage = meter.stop()
        end_heartbeat()
        events.result({**payload, "usage": usage})
        code = 0
    except Cancelled as exc:
        task_running.clear()
        end_heartbeat()
        events.error(exc)
        code = EXIT_CANCELLED
    except BaseException as exc:  # noqa: BLE001 - report everything, including KeyboardInterrupt
        task_running.clear()
        end_heartbeat()
        code = EXIT_DISK_FULL if _disk_full(exc) else 1
        try:
            events.error(exc)
        except OSError:  # the disk is full: the exit code and stderr still say why
            print(f"engine.worker: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    finally:
        stop.set()
        meter.stop()
        for timer in timers:  # a job that stopped within its grace must not take its process down later
            timer.cancel()
    _write_exit(job_dir, code)
    with contextlib.suppress(OSError):
        events.close()
    return code


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC anywhere in the exception's chain (a task may wrap the OSError in its own error)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.worker <job_dir>", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    if not JobDir(job_dir).spec.is_file():
        print(f"engine.worker: no {JobDir.SPEC} in {job_dir}", file=sys.stderr)
        return 2
    with job_listing():  # the data folders are listed once per job, not once per symbol
        return run_job(job_dir)


if __name__ == "__main__":
    rc = main()
    # Events and exit.json are already on disk. Skipping interpreter teardown makes the exit
    # prompt (the engine sees it sooner) and cannot hang on a non-daemon thread a task left behind.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
