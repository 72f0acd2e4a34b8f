"""Job state as the engine sees it, and how one worker event changes it.

`apply_event` is a pure function of (state, event) so the same code serves live tailing and
rebuilding a job from its `events.jsonl` when an engine re-attaches: replaying a file gives the
same state the first engine had. Side effects (store writes, curve lists) live in engine.jobtable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the console reads states without importing the spec's validation
    from engine.jobs import JobSpec


class Status(StrEnum):
    """A job's state: the one spelling of every name (members are plain strings in records and JSON)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


STATES: tuple[str, ...] = tuple(Status)
ACTIVE_STATES: frozenset[str] = frozenset({Status.QUEUED, Status.RUNNING})
FINAL_STATES: frozenset[str] = frozenset(s for s in Status if s not in ACTIVE_STATES)
UPDATE_KINDS: tuple[str, ...] = ("state", "progress", "loss", "log", "metric", "result", "removed")  # removed: gc forgot it


@dataclass
class JobState:
    """Everything the console shows about one job; plain data so it can be stored as a dict."""

    id: str
    kind: str
    symbols: tuple[str, ...]
    model: str | None
    state: str = Status.QUEUED
    priority: int = 0
    attempt: int = 1
    progress_done: float = 0.0
    progress_total: float = 0.0
    eta_s: float | None = None
    device: str | None = None  # "cpu" or "cuda:<i>" once admitted
    pid: int | None = None
    reason: str | None = None  # why it failed / was cancelled / interrupted
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    last_train_loss: float | None = None
    last_val_loss: float | None = None
    result_summary: dict[str, Any] | None = None
    # Additions beyond CONTRACTS.md's minimum (documented there):
    stage: str | None = None
    # where the job is (from its progress events; kept after it ends, so a stopped job says where it stopped)
    symbol: str | None = None
    symbol_i: int | None = None
    symbol_n: int | None = None
    epoch_i: int | None = None
    epoch_n: int | None = None
    warning: str | None = None  # e.g. stale heartbeat with a live pid (never a kill)
    last_heartbeat: float | None = None
    exit_code: int | None = None
    stderr_tail: str | None = None
    vram_gb: float = 0.0  # the spec's estimate
    # engine.vram: what admission reserved and from what (earlier jobs' measured peak, when known) ...
    vram_reserved_gb: float | None = None
    vram_measured_gb: float | None = None
    # ... and this job's own peaks, from its result's `usage`
    peak_vram_gb: float | None = None
    peak_rss_gb: float | None = None
    parent: str | None = None
    # times this job was recorded as running and handed to a worker (engine.launches: an engine stop
    # before the worker started queues it again, up to MAX_LAUNCHES)
    launches: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: JobSpec) -> JobState:
        return cls(
            id=spec.id, kind=spec.kind, symbols=tuple(spec.symbols), model=spec.model,
            priority=spec.priority, attempt=spec.attempt, created_at=spec.created_at,
            vram_gb=spec.resources.vram_gb, parent=spec.parent,
        )

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def to_record(self) -> dict[str, Any]:
        """The dict stored as the job record (symbols as a list so it round-trips through JSON)."""
        d = asdict(self)
        d["symbols"] = list(self.symbols)
        return d

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> JobState:
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in rec.items() if k in known}
        kw["symbols"] = tuple(kw.get("symbols") or ())
        kw["metrics"] = dict(kw.get("metrics") or {})
        return cls(**kw)


@dataclass
class JobUpdate:
    """One change pushed to subscribers; `kind` is one of UPDATE_KINDS."""

    job_id: str
    kind: str
    data: dict[str, Any]


def usage_vram_gb(usage: dict[str, Any]) -> float | None:
    """A result's device-memory peak (engine.vram.PeakUsage.vram_gb); None when absent or malformed."""
    from pydantic import ValidationError

    from engine.peaks import PeakUsage

    try:
        return PeakUsage.model_validate(usage).vram_gb
    except ValidationError:
        return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


#: The counters of a progress event that say where a job is (1-based; engine.events).
WHERE_COUNTS: tuple[str, ...] = ("symbol_i", "symbol_n", "epoch_i", "epoch_n")


def where_words(st: JobState, short: bool = False) -> str:
    """Where a job is, or stopped: `training · SPY 2/2 · epoch 3/15` (the parts that are known);
    `short`: `training SPY 2/2 ep 3/15` (a table cell)."""
    parts = [st.stage] if st.stage else []
    if st.symbol or st.symbol_n:
        sym = st.symbol or "symbol"
        parts.append(f"{sym} {st.symbol_i}/{st.symbol_n}" if st.symbol_i and st.symbol_n and st.symbol_n > 1 else sym)
    if st.epoch_i and st.epoch_n:
        parts.append(f"{'ep' if short else 'epoch'} {st.epoch_i}/{st.epoch_n}")
    return (" " if short else " · ").join(parts)


def apply_event(st: JobState, ev: dict[str, Any]) -> list[JobUpdate]:
    """Fold one worker event into `st`; return the updates subscribers should see.

    Terminal states are NOT decided here: a job is finished when its process ends (the
    controller knows the exit status); an `error` event only records the reason.
    """
    typ = ev.get("type")
    t = _num(ev.get("t"))
    jid = st.id
    if typ == "heartbeat":
        st.last_heartbeat = t
        if st.warning is not None and st.warning.startswith("no heartbeat"):
            st.warning = None
            return [JobUpdate(jid, "state", {"state": st.state, "warning": None})]
        return []
    if t is not None:
        st.last_heartbeat = t  # any event proves the worker is alive
    if typ == "started":
        st.started_at = st.started_at or t
        if isinstance(ev.get("pid"), int):
            st.pid = ev["pid"]
        if st.state == "queued":
            st.state = "running"
        return [JobUpdate(jid, "state", {"state": st.state, "pid": st.pid, "started_at": st.started_at})]
    if typ == "progress":
        st.progress_done = _num(ev.get("done")) or 0.0
        st.progress_total = _num(ev.get("total")) or 0.0
        st.eta_s = _num(ev.get("eta_s"))
        if ev.get("stage") is not None:
            st.stage = str(ev["stage"])
        if isinstance(ev.get("symbol"), str):
            st.symbol = ev["symbol"]
        for name in WHERE_COUNTS:
            if name in ev:
                setattr(st, name, _int(ev.get(name)))
        return [JobUpdate(jid, "progress", {"done": st.progress_done, "total": st.progress_total,
                                            "eta_s": st.eta_s, "stage": st.stage, "symbol": st.symbol,
                                            **{n: getattr(st, n) for n in WHERE_COUNTS}})]
    if typ == "loss":
        train, val = _num(ev.get("train")), _num(ev.get("val"))
        if train is not None:
            st.last_train_loss = train
        if val is not None:
            st.last_val_loss = val
        point = {"step": ev.get("step"), "epoch": ev.get("epoch"), "train": train, "val": val, "t": t}
        for tag in ("symbol", "run"):
            if isinstance(ev.get(tag), str):
                point[tag] = ev[tag]
        return [JobUpdate(jid, "loss", point)]
    if typ == "metric":
        name, value = str(ev.get("name")), _num(ev.get("value"))
        if value is not None:
            st.metrics[name] = value
        return [JobUpdate(jid, "metric", {"name": name, "value": value})]
    if typ == "log":
        return [JobUpdate(jid, "log", {"level": ev.get("level", "info"), "msg": str(ev.get("msg", ""))})]
    if typ == "artifact":
        return [JobUpdate(jid, "log", {"level": "info", "msg": f"artifact {ev.get('kind')}: {ev.get('path')}"})]
    if typ == "result":
        summary = ev.get("summary")
        st.result_summary = summary if isinstance(summary, dict) else {}
        usage = ev.get("usage")
        if isinstance(usage, dict):
            st.peak_rss_gb = _num(usage.get("peak_rss_gb"))
            st.peak_vram_gb = usage_vram_gb(usage)
        payload = {k: v for k, v in ev.items() if k not in ("job", "t", "type")}
        return [JobUpdate(jid, "result", payload)]
    if typ == "error":
        st.reason = f"{ev.get('exc_type', 'Error')}: {ev.get('msg', '')}"
        return [JobUpdate(jid, "log", {"level": "error", "msg": st.reason})]
    return [JobUpdate(jid, "log", {"level": "warning", "msg": f"unknown event type {typ!r}"})]
