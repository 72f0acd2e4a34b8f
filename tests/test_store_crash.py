"""SIGKILL a process that is writing runs, many times at random moments: the store always opens and
every run the writer acknowledged (printed after log_run returned) is still there, whole."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import Store
from store.storage import StoreError
from store.tracker import git_commit, package_versions

ROOT = Path(__file__).resolve().parent.parent

WRITER = r"""
import os, sys
from store import Store
ws, out = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
def say(line):
    os.write(out, (line + "\n").encode())
try:
    st = Store.open(ws, hyperparams_dir=os.path.join(ws, "hp"))
    say("ready")
    i = 0
    while True:
        say(f"w {i}")
        rid = st.log_run("toto", "AAPL", {"i": i, "lr": 1e-4}, {"val_mae_pct": float(i % 7)},
                         seed=i, notes="crash test " * (i % 5))
        say(rid)
        i += 1
except BaseException as exc:
    say("ERR " + type(exc).__name__ + ": " + str(exc))
    os._exit(3)
"""


class _Pipe:
    """Line reader over a pipe's read end (keeps a partial line for the next call)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def lines(self, until_ready: bool, timeout: float) -> list[str]:
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            r, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            out += [d.decode() for d in done]
            if until_ready and "ready" in out:
                break
        return out

    def close(self) -> None:
        os.close(self.fd)


def _fork_writer(ws: Path) -> tuple[int, int]:
    """A writer in a forked child (fast to start, so 50+ kills fit in seconds)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(r)
            code = compile(WRITER, "<writer>", "exec")
            sys.argv = ["writer", str(ws), str(w)]
            exec(code, {"__name__": "__writer__"})
        finally:
            os._exit(4)
    os.close(w)
    return pid, r


def _spawn_writer(ws: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A writer in a fresh interpreter (what the engine really runs)."""
    r, w = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ws), str(w)], pass_fds=(w,), env=env, cwd=ROOT)
    os.close(w)
    return proc, r


def _stored_ids(ws: Path) -> set[str]:
    with Store.open(ws, readonly=True) as ro:
        return {r["run_id"] for r in ro.runs()}


def test_sigkill_writer_many_times_loses_no_acknowledged_run(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    rng = random.Random(1234)
    git_commit(), package_versions()  # warm the per-process caches forked writers inherit
    acked: list[str] = []
    kills = 0
    killed_before_ready = 0
    mid_write = 0  # kills after a writer said it starts a write and before it acknowledged it
    for i in range(60):
        fresh = i % 15 == 0  # a few fresh interpreters; the rest forked for speed
        if fresh:
            proc, fd = _spawn_writer(ws)
            pid = proc.pid
        else:
            pid, fd = _fork_writer(ws)
        pipe = _Pipe(fd)
        early = i % 6 == 5  # sometimes kill while it is still opening the store
        if early:
            time.sleep(rng.uniform(0, 0.004))
            lines: list[str] = []
        else:
            lines = pipe.lines(until_ready=True, timeout=20)
            assert "ready" in lines, f"writer {i} never opened the store: {lines}"
            time.sleep(rng.choice([0.0, rng.uniform(0, 0.01), rng.uniform(0, 0.08), rng.uniform(0.03, 0.12)]))
        os.kill(pid, signal.SIGKILL)
        if fresh:
            proc.wait(timeout=20)
            status_ok = proc.returncode == -signal.SIGKILL
        else:
            _, status = os.waitpid(pid, 0)
            status_ok = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        kills += 1
        lines += pipe.lines(until_ready=False, timeout=5)
        assert pipe.eof
        pipe.close()
        errors = [ln for ln in lines if ln.startswith("ERR")]
        assert not errors, f"writer {i} failed: {errors}"
        assert status_ok, f"writer {i} exited on its own instead of being killed"
        if "ready" not in lines:
            killed_before_ready += 1
        acked += [ln for ln in lines if ln and ln != "ready" and not ln.startswith("w ")]
        if lines and lines[-1].startswith("w "):
            mid_write += 1
        # The store always opens (read-only here: a reader never sees a partial transaction) ...
        stored = _stored_ids(ws)
        # ... and every acknowledged run is in it.
        missing = [a for a in acked if a not in stored]
        assert not missing, f"after kill {i}: {len(missing)} acknowledged run(s) lost, e.g. {missing[:3]}"

    print(f"kills={kills} acked={len(acked)} killed_before_ready={killed_before_ready} mid_write={mid_write}")
    assert kills >= 50
    assert len(acked) >= 15, f"too few runs acknowledged ({len(acked)}) for the test to mean anything"
    assert mid_write >= 1, "no kill landed in the middle of a write; the test proved nothing about writes"
    # After all that, a writer opens cleanly, no temp file is left, and every run is whole.
    with Store.open(ws, hyperparams_dir=tmp_path / "hp") as st:
        assert not list(ws.glob(".store.json.*.tmp"))
        runs = st.runs()
        assert {r["run_id"] for r in runs} >= set(acked)
        assert all(r["metrics"]["val_mae_pct"] == float(r["hyperparams"]["i"] % 7) for r in runs)
        st.log_run("toto", "AAPL", {"i": -1}, {"val_mae_pct": 0.5})


def test_reader_always_sees_a_whole_file_while_a_writer_runs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    proc, fd = _spawn_writer(ws)
    try:
        assert "ready" in _Pipe(fd).lines(until_ready=True, timeout=20)
        seen = []
        deadline = time.monotonic() + 1.5
        ro = Store.open(ws, readonly=True)
        while time.monotonic() < deadline:
            try:
                seen.append(len(ro.runs()))  # the same reader, re-reading as the file is replaced
                with Store.open(ws, readonly=True) as fresh:  # and fresh readers
                    fresh.best()
            except StoreError as exc:  # pragma: no cover - this is the failure being tested for
                pytest.fail(f"reader saw a bad file: {exc}")
        assert seen == sorted(seen), "a reader went backwards in time"
        assert seen[-1] > seen[0], "the reader never saw the writer's new runs"
        assert not list(ws.glob("store.json.corrupt-*"))
    finally:
        proc.kill()
        proc.wait()
        os.close(fd)
