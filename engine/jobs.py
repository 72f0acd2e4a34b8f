"""Job specs: the frozen, JSON-serialisable record that crosses every process boundary.

A spec is validated once, on the way in (`JobSpec.create`), so nothing invalid is ever queued,
written to `jobs/<id>/spec.json`, or handed to a worker.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.models import validate_model
from engine.names import JOBS_DIR
from engine.symbols import validate_symbol
from engine.task_params import PARAMS, TaskParamError
from engine.task_params import check as check_task_params
from store.atomic import atomic_write_text

#: The job kinds: exactly those with a parameter model (engine.task_params).
KINDS: tuple[str, ...] = tuple(PARAMS)
#: Kinds that need a model name; the others work over all models or naive only.
KINDS_WITH_MODEL: frozenset[str] = frozenset({"train", "validate", "sweep", "calibrate"})


class JobSpecError(ValueError):
    """A job spec that must not be queued; the message says which field and why."""


@dataclass(frozen=True)
class Resources:
    """What a job needs to be admitted: GPUs (0 = CPU slot) and its estimated VRAM."""

    gpus: float = 0.0
    vram_gb: float = 0.0
    cpus: int = 1

    def __post_init__(self) -> None:
        if self.gpus < 0 or self.vram_gb < 0 or self.cpus < 1:
            raise JobSpecError(f"resources must be non-negative with cpus >= 1, got {self}")


def new_job_id(kind: str) -> str:
    """Sortable and collision-free: UTC time to the millisecond plus 32 random bits."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{kind}-{secrets.token_hex(4)}"


#: A job spec is a request, never data: the whole spec.json and each string param are capped.
MAX_SPEC_BYTES = 1 << 20
MAX_PARAM_STR = 64 << 10


def _check_json(params: Mapping[str, Any]) -> dict[str, Any]:
    try:
        raw = json.dumps(dict(params), allow_nan=False)
        out = json.loads(raw)
    except (TypeError, ValueError, RecursionError) as exc:
        raise JobSpecError(f"params must be JSON-serialisable: {str(exc)[:200]}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise JobSpecError(f"params are larger than {MAX_SPEC_BYTES // 1024} KB")
    stack: list[tuple[str, Any]] = [("params", out)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str) and len(v) > MAX_PARAM_STR:
            raise JobSpecError(f"{where} is a string of {len(v)} characters (at most {MAX_PARAM_STR // 1024} KB)")
        if isinstance(v, dict):
            stack += [(f"{where}.{k}", x) for k, x in v.items()]
        elif isinstance(v, list):
            stack += [(f"{where}[{i}]", x) for i, x in enumerate(v)]
    return out


@dataclass(frozen=True)
class JobSpec:
    """One unit of work. `params` is a plain dict by construction (treat it as read-only)."""

    id: str
    kind: str
    symbols: tuple[str, ...]
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 0  # higher runs first; FIFO within a priority
    resources: Resources = field(default_factory=Resources)
    created_at: float = 0.0
    attempt: int = 1
    parent: str | None = None  # the job this one retries, or the sweep/pipeline that spawned it

    @classmethod
    def create(
        cls,
        kind: str,
        symbols: Sequence[str] | str,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        resources: Resources | Mapping[str, Any] | None = None,
        known_symbols: Iterable[str] | None = None,
        parent: str | None = None,
    ) -> JobSpec:
        """Validate everything and return a new spec with a fresh id, or raise JobSpecError."""
        if kind not in KINDS:
            raise JobSpecError(f"unknown job kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if isinstance(symbols, str):
            symbols = [symbols]
        if not symbols:
            raise JobSpecError("a job needs at least one symbol")
        try:
            syms = tuple(dict.fromkeys(validate_symbol(s) for s in symbols))
        except ValueError as exc:
            raise JobSpecError(str(exc)) from None
        if known_symbols is not None:
            known = set(known_symbols)
            unknown = [s for s in syms if s not in known]
            if unknown:
                raise JobSpecError(
                    f"unknown symbol(s): {', '.join(unknown)} (no CSV in the data folders)"
                )
        if model is not None:
            try:
                model = validate_model(model)
            except ValueError as exc:
                raise JobSpecError(str(exc)) from None
        elif kind in KINDS_WITH_MODEL:
            raise JobSpecError(f"a {kind} job needs a model")
        p = _check_json(params or {})
        try:
            check_task_params(kind, p)  # names, types and bounds: engine.task_params
        except TaskParamError as exc:
            raise JobSpecError(str(exc)) from None
        if not isinstance(priority, int):
            raise JobSpecError(f"priority must be an integer, got {priority!r}")
        if resources is None:
            res = Resources()
        elif isinstance(resources, Resources):
            res = resources
        else:
            res = Resources(**dict(resources))
        return cls(
            id=new_job_id(kind), kind=kind, symbols=syms, model=model, params=p, priority=priority,
            resources=res, created_at=time.time(), attempt=1, parent=parent,
        )

    def retry(self) -> JobSpec:
        """A new attempt of the same work: same kind, symbols, params; new id; attempt + 1."""
        return replace(self, id=new_job_id(self.kind), created_at=time.time(),
                       attempt=self.attempt + 1, parent=self.id)

    def with_priority(self, priority: int) -> JobSpec:
        return replace(self, priority=int(priority))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["symbols"] = list(self.symbols)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobSpec:
        try:
            return cls(
                id=str(d["id"]), kind=str(d["kind"]), symbols=tuple(d["symbols"]), model=d.get("model"),
                params=dict(d.get("params") or {}), priority=int(d.get("priority", 0)),
                resources=Resources(**dict(d.get("resources") or {})),
                created_at=float(d.get("created_at", 0.0)), attempt=int(d.get("attempt", 1)),
                parent=d.get("parent"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JobSpecError(f"malformed job spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))

    def write(self, job_dir: os.PathLike[str] | str) -> None:
        """Write `spec.json` atomically (the worker reads it; it must never see half a file)."""
        atomic_write_text(JobDir(Path(job_dir)).spec, self.to_json())


@dataclass(frozen=True)
class JobDir:
    """A job's folder, `<workspace>/jobs/<id>/`, and the one definition of every file name in it.

    spec.json (the JobSpec, written before the job is queued), events.jsonl (the worker's event
    stream; rotated into compacted segments events.<offset>.jsonl beside it, engine.eventlog), stderr.log (the worker's stdout+stderr), pid.json (local backend: pid, process group,
    start time), exit.json (the worker's exit code, written as it ends), rejected.txt (why the engine
    refused a spooled spec), launch-<n>.claim (whether launch n's worker started: engine.launches).
    """

    path: Path

    SPEC = "spec.json"
    EVENTS = "events.jsonl"
    STDERR = "stderr.log"
    PID = "pid.json"
    EXIT = "exit.json"
    REJECTED = "rejected.txt"
    CANCEL = "cancel.request"
    LAUNCH_CLAIM = "launch-{n}.claim"

    @classmethod
    def of(cls, workspace: os.PathLike[str] | str, job_id: str) -> JobDir:
        return cls(Path(workspace) / JOBS_DIR / job_id)

    @property
    def job_id(self) -> str:
        return self.path.name

    @property
    def spec(self) -> Path:
        return self.path / self.SPEC

    @property
    def events(self) -> Path:
        return self.path / self.EVENTS

    @property
    def stderr(self) -> Path:
        return self.path / self.STDERR

    @property
    def pid(self) -> Path:
        return self.path / self.PID

    @property
    def exit(self) -> Path:
        return self.path / self.EXIT

    @property
    def rejected(self) -> Path:
        return self.path / self.REJECTED

    @property
    def cancel(self) -> Path:
        return self.path / self.CANCEL

    def launch_claim(self, n: int) -> Path:
        """Who took launch `n` of this job first: its worker, or an engine that revoked it (engine.launches)."""
        return self.path / self.LAUNCH_CLAIM.format(n=int(n))

    def read_spec(self) -> JobSpec:
        return JobSpec.from_json(self.spec.read_text(encoding="utf-8"))

    def stderr_tail(self, n_lines: int = 12, max_bytes: int = 4000) -> str:
        """The last lines the worker printed (shown with a failure)."""
        try:
            with open(self.stderr, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - max_bytes))
                data = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(data.strip().splitlines()[-n_lines:])


#: `<workspace>/jobs/` (engine.names.JOBS_DIR) holds one JobDir per job, plus the spool inbox `jobs/inbox/`.
INBOX_DIR = "inbox"


def inbox_dir(workspace: os.PathLike[str] | str) -> Path:
    return Path(workspace) / JOBS_DIR / INBOX_DIR
