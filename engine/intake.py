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
from typing import TYPE_CHECKING

from engine.gpu import Telemetry
from engine.jobs import JobDir, JobSpec, JobSpecError, inbox_dir
from engine.jobtable import JobTable
from engine.names import validate_name
from engine.scheduler import Scheduler
from engine.specfile import read_spool_spec
from engine.state import JobState
from store.atomic import atomic_write_text

if TYPE_CHECKING:
    from engine.persistence import Persistence

log = logging.getLogger("engine")

CANCEL_SUFFIX = ".cancel"
#: `jobs/inbox/rejected/<marker name>`: a refused spool file, holding why.
REJECTED_DIR = "rejected"


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
                 backend_schedules: bool, telemetry: Callable[[], Telemetry | None],
                 persistence: Persistence) -> None:
        self.workspace = workspace
        self.persistence = persistence
        self.table = table
        self.scheduler = scheduler
        self.validate_symbols = validate_symbols
        self.backend_schedules = backend_schedules
        self.telemetry = telemetry
        self._known: tuple[float, set[str]] | None = None

    def known_symbols(self) -> set[str]:
        """Symbols with a CSV in the data folders (cached 2 s)."""
        if self._known is not None and time.time() - self._known[0] < 2.0:
            return self._known[1]
        from engine import paths
        from engine.data import list_symbols

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
        """Take spooled markers. A new job is queued here and recorded, with its intake, in this
        tick's store transaction; its marker is removed only after that commit (engine.persistence).
        Anything wrong with one file (unreadable, oversized, malformed, invalid: any exception)
        rejects that file with its reason and the engine goes on."""
        inbox = inbox_dir(self.workspace)
        for name in names:
            marker = inbox / name
            if name.endswith(".tmp") or not marker.is_file():
                continue
            if name.endswith(CANCEL_SUFFIX):
                jid = name[: -len(CANCEL_SUFFIX)]
                try:
                    j = self.table.get(jid)
                    if j is not None and not j.state.finished:
                        cancel(jid)
                except Exception as exc:  # noqa: BLE001 - a bad cancel marker must not stop the engine
                    log.error("spooled cancel %s ignored: %s", name, exc)
                with contextlib.suppress(OSError):
                    marker.unlink()
                continue
            if name in self.table.jobs or self.persistence.seen_intake(name):
                # Taken by an earlier tick or engine whose commit landed before its marker was removed.
                self.persistence.note_intake(marker, name, "queued")
                continue
            try:
                spec = read_spool_spec(self.table.dir(validate_name("job id", name)).spec, name)
                self.validate(spec)
                self.table.enqueue(spec)
            except Exception as exc:  # noqa: BLE001 - any failure rejects this one file, never the tick
                self._reject(marker, name, exc)
                continue
            self.persistence.note_intake(marker, name, "queued")

    def _reject(self, marker: Path, name: str, exc: BaseException) -> None:
        """Move the marker to `jobs/inbox/rejected/<name>` holding the reason (and, for a valid id,
        `jobs/<id>/rejected.txt`, which sweeps and pipelines wait on)."""
        why = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        msg = f"spooled job {name!r} rejected: {why[:2000]}"
        log.error(msg)
        rejected = inbox_dir(self.workspace) / REJECTED_DIR
        with contextlib.suppress(OSError):
            rejected.mkdir(exist_ok=True)
            atomic_write_text(rejected / name, msg + "\n")
        with contextlib.suppress(OSError, ValueError):
            jd = self.table.dir(validate_name("job id", name))
            jd.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(jd.rejected, msg + "\n")
        with contextlib.suppress(OSError):
            marker.unlink()
