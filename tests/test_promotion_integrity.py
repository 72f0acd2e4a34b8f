"""Integrity of promotion itself: the audit and the file cannot diverge across a SIGKILL, rollback
refuses when another workspace promoted since, one promotion at a time per hyperparams folder, and a
replaced file keeps its permission bits."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from store import Store, StoreError
from store.promotion import LOCK_NAME

ROOT = Path(__file__).resolve().parent.parent


def _pick(st: Store, tag: int, symbol: str = "SPY") -> None:
    st.set_pick("toto", symbol, {"config": {"num_samples": 8, "tag": tag}, "horizon": 16,
                                 "validation": {"mae_pct": 1.0 + tag}, "test": {"mae_pct": 2.0}})


def _consistent(ws: Path, hp: Path) -> str:
    """Open as the writer (which settles a crashed promotion) and check audit == file."""
    with Store.open(ws, hyperparams_dir=hp) as st:
        path = st.promoted_path("toto", "SPY")
        raw = st._table("promotions")
        done = {e.get("intent_id") for e in raw.values() if e["action"] != "intent"}
        assert all(e.get("intent_id") in done for e in raw.values() if e["action"] == "intent"), "open intent left"
        stack = st._stack("toto", "SPY")
        live = path.read_bytes() if path.exists() else None
        if stack:
            assert live is not None and hashlib.sha256(live).hexdigest() == stack[-1].content_sha256
            return "promoted"
        assert live is None
        return "none"


CHILD = r"""
import sys
from store import Store
ws, hp = sys.argv[1], sys.argv[2]
st = Store.open(ws, hyperparams_dir=hp)
print("ready", flush=True)
while True:
    st.promote("toto", "SPY", by="loop")
    st.rollback("toto", "SPY", by="loop")
"""


def test_sigkill_between_the_writes_leaves_file_and_audit_consistent(tmp_path: Path) -> None:
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    with Store.open(ws, hyperparams_dir=hp) as st:
        _pick(st, 1)
    rng = random.Random(5)
    seen = set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(8):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(ws), str(hp)], stdout=subprocess.PIPE,
                                 text=True, env=env, cwd=tmp_path)
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        try:  # the kill lands at a random point of the promote/rollback loop
            child.wait(timeout=rng.uniform(0.05, 0.6))
        except subprocess.TimeoutExpired:
            pass
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        seen.add(_consistent(ws, hp))
    # after all that, undo still walks back correctly
    with Store.open(ws, hyperparams_dir=hp) as st:
        while st._stack("toto", "SPY"):
            st.rollback("toto", "SPY")
        assert not st.promoted_path("toto", "SPY").exists()
        assert len(st.promotions()) > 8  # the loop really ran


def test_a_crash_after_the_file_write_is_completed_from_the_file(tmp_path: Path, monkeypatch) -> None:
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    with Store.open(ws, hyperparams_dir=hp) as st:
        _pick(st, 1)
        real = st._log
        calls = []

        def dies_after_intent(entry):  # the completion entry never reaches the store
            calls.append(entry.action)
            if entry.action != "intent":
                raise KeyboardInterrupt("simulated crash")
            real(entry)

        monkeypatch.setattr(st, "_log", dies_after_intent)
        with pytest.raises(KeyboardInterrupt):
            st.promote("toto", "SPY")
        assert calls == ["intent", "promote"] and st.promoted_path("toto", "SPY").exists()
    with Store.open(ws, hyperparams_dir=hp) as st:
        (entry,) = st.promotions()
        assert entry.action == "promote" and entry.recovered
        st.rollback("toto", "SPY")  # the recovered promotion can be undone
        assert not st.promoted_path("toto", "SPY").exists()


def test_two_workspaces_sharing_hyperparams_cannot_clobber_each_others_rollbacks(tmp_path: Path) -> None:
    hp = tmp_path / "hp"
    w1 = Store.open(tmp_path / "w1", hyperparams_dir=hp)
    w2 = Store.open(tmp_path / "w2", hyperparams_dir=hp)
    try:
        _pick(w1, 1)
        _pick(w2, 2)
        path = w1.promote("toto", "SPY", by="alice")
        a = path.read_bytes()
        w2.promote("toto", "SPY", by="bob")
        b = path.read_bytes()
        with pytest.raises(StoreError, match=r"no longer holds what this workspace promoted .*bob"):
            w1.rollback("toto", "SPY")
        assert path.read_bytes() == b  # nothing changed
        w2.rollback("toto", "SPY")
        assert path.read_bytes() == a  # bob's rollback restores alice's promotion
        w1.rollback("toto", "SPY")  # now the file holds what w1 wrote again
        assert not path.exists()
    finally:
        w1.close()
        w2.close()


def test_promotions_are_serialised_by_a_lock_on_the_hyperparams_folder(tmp_path: Path) -> None:
    hp = tmp_path / "hp"
    hp.mkdir()
    with Store.open(tmp_path / "ws", hyperparams_dir=hp) as st:
        _pick(st, 1)
        fd = os.open(hp / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # another promoter holds the folder
        done = threading.Event()
        t = threading.Thread(target=lambda: (st.promote("toto", "SPY"), done.set()))
        t.start()
        try:
            assert not done.wait(0.5) and not st.promoted_path("toto", "SPY").exists()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        t.join(30)
        assert done.is_set() and st.promoted_path("toto", "SPY").exists()


def test_replacing_a_promoted_file_keeps_its_permissions(tmp_path: Path) -> None:
    hp = tmp_path / "hp"
    with Store.open(tmp_path / "ws", hyperparams_dir=hp) as st:
        _pick(st, 1)
        path = st.promote("toto", "SPY")
        os.chmod(path, 0o640)
        _pick(st, 2)
        st.promote("toto", "SPY")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert json.loads(path.read_text())["config"]["tag"] == 2
        st.rollback("toto", "SPY")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
