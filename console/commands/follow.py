"""Submit jobs and follow them: the one path every headless job command goes through.

Every command is a client of the workspace's engine service (engine.client.JobClient), which is
started on demand and is the only store writer, so a command behaves the same whether or not a
console is open. Following is one loop (`follow_state`) over the client's subscription:

  * progress as a rich bar on a terminal, plain throttled lines otherwise; the job's warnings and
    its error are printed before the verdict, which comes once the job's record and results are in
    the store (the engine's `wait`);
  * Ctrl-C detaches: the job keeps running in the service, and we print the command that follows it
    again (`forecast-console attach ID`);
  * an engine that dies while we follow is started again by the subscription, re-attaches the job
    (or marks it interrupted) and the follow goes on;
  * exit status 0 when the job succeeded (or on detach), 2 when the engine refused the spec, else 1.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from engine.client import JobClient
    from engine.jobs import JobSpec

DETACHED = "detached"
REJECTED = "rejected"


class Printer:
    """Rich progress bar on a terminal, plain throttled lines otherwise (logs, CI).

    `stream` is stdout for the job commands; the evaluation commands pass stderr so that their
    `--json` output on stdout stays parseable.
    """

    def __init__(self, job_id: str, stream: TextIO | None = None) -> None:
        self.job_id = job_id
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self._last_line = 0.0
        self._progress: Any = None
        self._task: Any = None
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                      console=Console(file=self.stream))
            self._progress.start()
            self._task = self._progress.add_task(job_id[-26:], total=None, info="")

    def say(self, msg: str) -> None:
        if self._progress is not None:
            self._progress.console.print(msg)
        else:
            print(msg, file=self.stream, flush=True)

    def progress(self, done: float, total: float, stage: str | None, info: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total or None,
                                  info=" ".join(x for x in (stage or "", info) if x))
            return
        now = time.monotonic()
        if now - self._last_line >= 0.5 or (total and done >= total):
            self._last_line = now
            pct = f" {100 * done / total:5.1f}%" if total else ""
            extra = " ".join(x for x in (stage or "", info) if x)
            print(f"[{self.job_id}] progress {done:g}/{total:g}{pct} {extra}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def detach_hint(job_id: str) -> str:
    return f"detached; job {job_id} keeps running. Re-attach with: forecast-console attach {job_id}"


def exit_code(state: str) -> int:
    """0 for success or a detach (the job goes on), 2 for a spec the engine refused, else 1."""
    return {"succeeded": 0, DETACHED: 0, REJECTED: 2}.get(state, 1)


def client(ws: Path, cpu_slots: int | None = None) -> JobClient:
    from engine.client import JobClient

    return JobClient(ws, cpu_slots=cpu_slots)


# ---- following ---------------------------------------------------------------------------------
def _header(pr: Printer, rec: dict[str, Any]) -> None:
    what = " ".join(x for x in (rec.get("kind"), " ".join(rec.get("symbols") or []), rec.get("model") or "") if x)
    pr.say(f"job {rec['id']}: {what} — {rec.get('state')}")


def follow_state(jc: JobClient, job_id: str, stream: TextIO | None = None, show_result: bool = True,
                 submitted: dict[str, Any] | None = None) -> tuple[str, str | None]:
    """Follow one job to its end: (final state, reason), or ("detached", None) on Ctrl-C.

    `submitted`: the record `submit` returned (the header then shows the state it was queued in)."""
    from engine.state import FINAL_STATES, JobState, where_words

    pr = Printer(job_id, stream)
    st: JobState | None = None
    if submitted is not None:
        _header(pr, submitted)
    try:
        for msg in jc.subscribe(detail=[job_id]):
            if "snapshot" in msg:
                recs = {r["id"]: r for r in msg["snapshot"]["jobs"]}
                if job_id not in recs:
                    from console.cli import CliError

                    raise CliError(f"no such job: {job_id}")
                first = st is None
                st = JobState.from_record(recs[job_id])
                ended = st.finished
                if first:
                    if submitted is None:
                        _header(pr, recs[job_id])
                    for line in (msg["snapshot"]["details"].get(job_id) or {}).get("logs", []):
                        pr.say(f"  {line}")
            else:
                u = msg["update"]
                if u["job_id"] != job_id or st is None:
                    continue
                if msg.get("job"):
                    st = JobState.from_record(msg["job"])
                kind, data = u["kind"], u["data"]
                # The record rides on each update as it was when sent: the job may already be over,
                # but its earlier updates (progress, warnings) are still to be printed, in order.
                ended = kind == "state" and data.get("state") in FINAL_STATES
                if kind == "progress":
                    loss = f"loss {st.last_train_loss:.4g}" if st.last_train_loss is not None else ""
                    pr.progress(st.progress_done, st.progress_total, where_words(st), loss)
                elif kind == "log":
                    pr.say(f"  {data.get('level', 'info')}: {data.get('msg', '')}")
                elif kind == "state" and data.get("warning"):
                    pr.say(f"  warning: {data['warning']}")
            if ended:
                break
        rec = jc.wait(job_id)  # the verdict once the record and results are stored
        st = JobState.from_record(rec)
        if st.result_summary and show_result:
            pr.say("result: " + json.dumps(st.result_summary, default=str)[:2000])
        pr.close()
        print(f"job {job_id} {st.state}" + (f": {st.reason}" if st.reason else ""), file=pr.stream, flush=True)
        return str(st.state), st.reason
    except KeyboardInterrupt:
        pr.close()
        print(detach_hint(job_id), file=pr.stream, flush=True)
        return DETACHED, None
    finally:
        pr.close()


def follow(ws: Path, job_id: str) -> int:
    """Follow a job of this workspace until it ends or Ctrl-C (detach); the exit status."""
    state, _ = follow_state(client(ws), job_id)
    return exit_code(state)


def submit(jc: JobClient, spec: JobSpec, detach: bool, note: str = "") -> int:
    """Queue `spec` through the engine service and follow it (or return at once); the exit status."""
    rec = jc.submit(spec, settle=detach)
    print(f"queued {spec.id}{note}", flush=True)
    if detach:
        where = f" on {rec.get('device')} (pid {rec.get('pid')})" if rec.get("state") == "running" else " (queued)"
        print(f"{spec.id}{where}; the engine service runs it; follow with: forecast-console attach {spec.id}",
              flush=True)
        return 0
    state, _ = follow_state(jc, spec.id, submitted=rec)
    return exit_code(state)


def submit_and_follow(ws: Path, spec: JobSpec, detach: bool, cpu_slots: int | None = None) -> int:
    """What `run`, `train` and `retry` do: queue `spec`, follow it unless `detach`."""
    return submit(client(ws, cpu_slots), spec, detach)


# ---- several jobs, results wanted (the evaluation commands) ------------------------------------
@dataclass
class Outcome:
    spec: Any
    state: str
    reason: str | None
    result: dict[str, Any] | None


def job_result(ws: Path, job_id: str) -> dict[str, Any] | None:
    """The payload of the job's `result` event (what the task returned), or None."""
    from engine.events import job_result as read_result
    from engine.jobs import JobDir

    return read_result(JobDir.of(ws, job_id).events)


def run_jobs(ws: Path, specs: Sequence[JobSpec], *, stream: TextIO | None = None) -> list[Outcome] | None:
    """Queue every spec, follow each to its end, and return their outcomes (results included).

    Progress goes to `stream` (stderr by default, so a command's stdout carries only its answer).
    None when the user detached with Ctrl-C (the jobs go on; the hint to re-attach each was printed).
    """
    out_stream = stream if stream is not None else sys.stderr
    jc = client(ws)
    recs = [jc.submit(s) for s in specs]
    outcomes: list[Outcome] = []
    for i, s in enumerate(specs):
        state, reason = follow_state(jc, s.id, out_stream, show_result=False, submitted=recs[i])
        if state == DETACHED:
            for rest in specs[i + 1:]:
                print(detach_hint(rest.id), file=out_stream, flush=True)
            return None
        outcomes.append(Outcome(s, state, reason, job_result(ws, s.id)))
    return outcomes
