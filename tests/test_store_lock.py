"""One writer per workspace, shown with real processes: a second writer is refused (StoreLocked,
naming the holder) or opens read-only when asked; read-only stores see the writer's updates."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import Store, StoreError, StoreLocked

ROOT = Path(__file__).resolve().parent.parent

HOLDER = r"""
import sys
from store import Store
st = Store.open(sys.argv[1], hyperparams_dir=sys.argv[1] + "/hp")
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "log":
        print(st.log_run("kronos", "SPY", {"t": 0.7}, {"val_mae_pct": 4.2}), flush=True)
    elif cmd == "quit":
        break
st.close()
print("closed", flush=True)
"""

SECOND = r"""
import sys
from store import Store, StoreLocked
try:
    Store.open(sys.argv[1])
except StoreLocked as exc:
    print("LOCKED", exc)
    sys.exit(3)
print("OPENED")
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture
def holder(tmp_path: Path):
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    yield ws, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_second_writer_process_is_refused_naming_the_holder(holder) -> None:
    ws, proc = holder
    out = subprocess.run([sys.executable, "-c", SECOND, str(ws)], capture_output=True, text=True,
                         env=_env(), cwd=ROOT, timeout=60)
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout.startswith("LOCKED")
    assert f"pid {proc.pid}" in out.stdout and "read-only" in out.stdout
    # and in this process too
    with pytest.raises(StoreLocked, match=rf"open for writing by another process \(pid {proc.pid} "):
        Store.open(ws)


def test_fallback_read_only_sees_writer_updates_and_refuses_writes(holder) -> None:
    ws, proc = holder
    before = (ws / "store.json").read_bytes()
    ro = Store.open(ws, fallback_readonly=True)
    assert ro.readonly is True
    assert ro.readonly_reason is not None and f"pid {proc.pid}" in ro.readonly_reason
    with pytest.raises(StoreError, match="read-only"):
        ro.log_run("toto", "AAPL", {}, {"val_mae_pct": 1.0})
    with pytest.raises(StoreError, match="read-only"):
        ro.put_job({"id": "j1", "state": "queued"})
    assert (ws / "store.json").read_bytes() == before
    assert ro.runs() == []

    proc.stdin.write("log\n")
    proc.stdin.flush()
    run_id = proc.stdout.readline().strip()
    assert run_id
    got = ro.get_run(run_id)  # the same read-only store picks up the writer's new file
    assert got is not None and got["model"] == "kronos" and got["symbol"] == "SPY"
    assert ro.best()["run_id"] == run_id
    ro.close()

    proc.stdin.write("quit\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "closed"
    proc.wait(timeout=30)
    with Store.open(ws) as st:  # the lock is free again
        assert not st.readonly
        assert st.get_run(run_id) is not None


def test_killed_holder_releases_the_lock(holder) -> None:
    ws, proc = holder
    with pytest.raises(StoreLocked):
        Store.open(ws)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while True:
        try:
            st = Store.open(ws)
            break
        except StoreLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    st.close()


def test_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "ws") as st:
        with pytest.raises(StoreLocked):
            Store.open(tmp_path / "ws")
        ro = Store.open(tmp_path / "ws", readonly=True)
        assert ro.readonly and not st.readonly
    Store.open(tmp_path / "ws").close()


def test_read_only_open_of_a_missing_workspace_creates_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "nothing-here"
    ro = Store.open(ws, readonly=True)
    assert ro.runs() == [] and ro.best() is None and ro.jobs() == []
    assert not ws.exists()
