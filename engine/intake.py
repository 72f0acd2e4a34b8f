"""How work enters the engine: validation of every spec, and the spool inbox.

Every spec is checked here, whichever way it came (an in-process `submit`, or a file in the
spool written by a process that cannot write the store): task params (a hand-written spool spec
never passed `JobSpec.create`), known symbols, and whether it could ever fit a GPU here.

Spool: `jobs/<id>/spec.json` first, then an empty marker `jobs/inbox/<id>` (or
`jobs/inbox/<id>.cancel`); the engine picks markers up on its next tick, validates the spec like
`submit`, and removes the marker. Marker after spec, so a half-written spec is never seen. A
refused spec leaves `jobs/<id>/rejected.txt` saying why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from engine.gpu import Telemetry
from engine.jobs import JobDir, JobSpec, JobSpecError, inbox_dir
from engine.jobtable import JobTable
from engine.scheduler import Scheduler
from engine.state import JobState
from store.atomic import atomic_write_text

log = logging.getLogger("engine")

CANCEL_SUFFIX = ".cancel"


# ---- the writing side (any process) ---------------------------------------------------------
def spool_submit(workspace: Path, spec: JobSpec) -> Path:
    """Hand a spec to a running engine: spec.json first, then the inbox marker."""
    jd = JobDir.of(workspace, spec.id)
    jd.path.mkdir(parents=True, exist_ok=True)
    spec.write(jd.path)
    inbox = inbox_dir(workspace)
    inbox.mkdir(parents=True, exist_ok=True)
    marker = inbox / spec.id
    marker.touch()
    return marker


def spool_cancel(workspace: Path, job_id: str) -> Path:
    inbox = inbox_dir(workspace)
    inbox.mkdir(parents=True, exist_ok=True)
    marker = inbox / f"{job_id}{CANCEL_SUFFIX}"
    marker.touch()
    return marker


def list_inbox(workspace: Path) -> list[str]:
    try:
        return sorted(os.listdir(inbox_dir(workspace)))
    except OSError:
        return []


# ---- the engine side ------------------------------------------------------------------------
class Intake:
    def __init__(self, workspace: Path, table: JobTable, scheduler: Scheduler, *, validate_symbols: bool,
                 backend_schedules: bool, telemetry: Callable[[], Telemetry | None]) -> None:
        self.workspace = workspace
        self.table = table
        self.scheduler = scheduler
        self.validate_symbols = validate_symbols
        self.backend_schedules = backend_schedules
        self.telemetry = telemetry
        self._known: tuple[float, set[str]] | None = None

    def known_symbols(self) -> set[str] | None:
        """Symbols with a CSV in the data folders (cached 2 s); None when the data layer is absent."""
        if self._known is not None and time.time() - self._known[0] < 2.0:
            return self._known[1]
        try:
            from engine.data import list_symbols
        except ImportError:
            return None
        from engine import paths

        syms = {i.symbol for i in list_symbols(paths.data_dirs(self.workspace))}
        self._known = (time.time(), syms)
        return syms

    def validate(self, spec: JobSpec) -> None:
        if not isinstance(spec, JobSpec):
            raise JobSpecError(f"expected a JobSpec, got {type(spec).__name__}")
        if spec.id in self.table.jobs:
            raise JobSpecError(f"job {spec.id} already exists")
        # Specs also arrive hand-written through the spool, never having passed JobSpec.create.
        from engine import task_params

        task_params.check(spec.kind, spec.params)
        if self.validate_symbols:
            known = self.known_symbols()
            if known is not None:
                unknown = [s for s in spec.symbols if s not in known]
                if unknown:
                    raise JobSpecError(f"unknown symbol(s): {', '.join(unknown)} (no CSV in the data folders)")
        self.scheduler.check_fits(spec, None if self.backend_schedules else self.telemetry())

    def submit(self, spec: JobSpec) -> JobState:
        """Validate and queue a job; raises JobSpecError (and queues nothing) when it is invalid."""
        self.validate(spec)
        jd = self.table.dir(spec.id)
        jd.path.mkdir(parents=True, exist_ok=True)
        spec.write(jd.path)
        return self.table.enqueue(spec)

    def take_inbox(self, names: list[str], cancel: Callable[[str], None]) -> None:
        inbox = inbox_dir(self.workspace)
        jobs = self.table.jobs
        for name in names:
            path = inbox / name
            if name.endswith(".tmp"):
                continue
            try:
                if name.endswith(CANCEL_SUFFIX):
                    jid = name[: -len(CANCEL_SUFFIX)]
                    if jid in jobs and not jobs[jid].state.finished:
                        cancel(jid)
                elif name not in jobs:
                    spec = self.table.dir(name).read_spec()
                    if spec.id != name:
                        raise JobSpecError(f"spec id {spec.id} does not match inbox marker {name}")
                    self.validate(spec)
                    self.table.enqueue(spec)
            except (OSError, ValueError) as exc:
                msg = f"spooled job {name} rejected: {exc}"
                log.error(msg)
                with contextlib.suppress(OSError):
                    jd = self.table.dir(name)
                    jd.path.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(jd.rejected, msg + "\n")
            with contextlib.suppress(OSError):
                path.unlink()
