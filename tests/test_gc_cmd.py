"""`forecast-console gc`: old finished jobs (with their saved forecasts) and unpromoted run artifacts
go; picked, promoted, recent and unfinished ones stay; --dry-run removes nothing; the removal is done by the engine service."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.commands.gc_cmd import parse_duration
from store import Store

DAY = 86400.0


def _gc(ws: Path, hp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", "--workspace", str(ws), "gc", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "FORECAST_HYPERPARAMS": str(hp)})


def _job(st: Store, jid: str, state: str, age_days: float) -> Path:
    t = time.time() - age_days * DAY
    st.put_job({"id": jid, "state": state, "created_at": t, "finished_at": t if state != "running" else None})
    d = st.workspace.job_dir(jid)
    d.mkdir(parents=True)
    (d / "events.jsonl").write_text('{"type":"heartbeat"}\n' * 100)
    return d


def _run(st: Store, name: str, val: float) -> tuple[str, Path]:
    d = st.workspace.runs_dir / name
    (d / "adapter").mkdir(parents=True)
    (d / "adapter" / "adapter.safetensors").write_bytes(b"x" * 1000)
    rid = st.log_run("toto", "SPY", {"n": name}, {"val_mae_pct": val}, checkpoint=str(d / "adapter"),
                     extra={"run_dir": str(d)})
    return rid, d


def test_gc_removes_only_what_is_old_and_unprotected(tmp_path: Path) -> None:
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    with Store.open(ws, hyperparams_dir=hp) as st:
        old_ok = _job(st, "old-ok", "succeeded", 40)
        old_failed = _job(st, "old-failed", "failed", 40)
        new_ok = _job(st, "new-ok", "succeeded", 1)
        running = _job(st, "old-running", "running", 40)
        picked, d_picked = _run(st, "picked", 1.0)
        promoted, d_promoted = _run(st, "promoted", 2.0)
        plain, d_plain = _run(st, "plain", 3.0)
        st.set_pick("toto", "SPY", {"config": {}, "horizon": 16, "source_run": promoted})
        st.promote("toto", "SPY", horizon=16)
        st.set_pick("toto", "SPY", {"config": {}, "horizon": 16, "source_run": picked})
        old = time.time() - 40 * DAY  # age these three runs (column and document)
        st._ledger._conn.execute("UPDATE runs SET created_at = ?, doc = json_set(doc, '$.created_at', ?) "
                                 "WHERE run_id IN (?, ?, ?)", (old, old, picked, promoted, plain))
        _, d_new = _run(st, "fresh", 4.0)
    dry = _gc(ws, hp, "--older-than", "30d", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert sorted(plan["jobs"]) == ["old-failed", "old-ok"] and plan["run_dirs"] == [str(d_plain)]
    assert plan["kept_runs"] == 2 and plan["dry_run"]
    assert old_ok.is_dir() and d_plain.is_dir()  # nothing removed
    kept = _gc(ws, hp, "--older-than", "30d", "--keep-failed")
    assert kept.returncode == 0, kept.stderr
    assert "removed job old-ok" in kept.stdout and "old-failed" not in kept.stdout
    assert not old_ok.exists() and old_failed.is_dir() and new_ok.is_dir() and running.is_dir()
    assert not d_plain.exists() and d_picked.is_dir() and d_promoted.is_dir() and d_new.is_dir()
    with Store.open(ws, readonly=True) as ro:
        assert ro.get_job("old-ok") is None and ro.get_job("old-failed") is not None
        assert len(ro.runs()) == 4  # run records stay
    assert _gc(ws, hp, "--older-than", "30d").returncode == 0
    assert not old_failed.exists()


def test_durations() -> None:
    assert parse_duration("30d") == 30 * DAY and parse_duration("12h") == 12 * 3600 and parse_duration("7") == 7 * DAY
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_gc_dry_run_reads_beside_the_writer(tmp_path: Path) -> None:
    """A dry run only reads: it works while another process holds the writer lock (a real gc goes
    through that writer, the engine service: tests/test_writing_commands.py)."""
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    with Store.open(ws, hyperparams_dir=hp) as st:
        _job(st, "old-ok", "succeeded", 40)
        r = _gc(ws, hp, "--dry-run")
    assert r.returncode == 0 and "would remove job old-ok" in r.stdout, r.stderr


def test_gc_removes_the_saved_forecasts_of_jobs_that_go_or_are_gone(tmp_path: Path) -> None:
    """forecasts/<job id>/ goes with its job, or once its job's record is gone and the folder is older
    than the cut-off; the forecasts of a job a current pick or comparison names stay (the Forecast view
    draws those decisions from them), as do recent ones."""
    import os

    from engine.gc import Plan, plan_gc

    ws, hp = tmp_path / "ws", tmp_path / "hp"

    def forecasts(st: Store, jid: str, age_days: float = 0.0) -> Path:
        f = st.workspace.forecast_file(jid, "SPY", 16)
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x" * 500)
        if age_days:
            t = time.time() - age_days * DAY
            os.utime(f, (t, t))
            os.utime(f.parent, (t, t))
        return f.parent

    with Store.open(ws, hyperparams_dir=hp) as st:
        _job(st, "old-ok", "succeeded", 40)
        _job(st, "old-picked", "succeeded", 40)
        _job(st, "new-ok", "succeeded", 1)
        f_old, f_picked, f_new = forecasts(st, "old-ok", 40), forecasts(st, "old-picked", 40), forecasts(st, "new-ok")
        f_gone = forecasts(st, "gone-long-ago", 40)  # its job record removed by an earlier gc
        f_gone_recent = forecasts(st, "gone-recently", 1)
        st.set_pick("toto", "SPY", {"config": {}, "horizon": 16}, job_id="old-picked")
        plan = plan_gc(st, 30 * DAY, keep_failed=False)
        assert sorted(plan.jobs) == [("old-ok", st.workspace.job_dir("old-ok")),
                                     ("old-picked", st.workspace.job_dir("old-picked"))]
        assert plan.forecast_dirs == [("gone-long-ago", f_gone), ("old-ok", f_old)] and plan.kept_forecasts == 1
        assert Plan.from_dict(plan.to_dict()) == plan  # what the engine service answers reads back the same
    r = _gc(ws, hp, "--older-than", "30d")  # through the engine service, the only writer
    assert r.returncode == 0, r.stderr
    assert f"removed saved forecasts {f_old}  (job old-ok)" in r.stdout and "2 forecast folder(s)" in r.stdout
    assert "1 job(s)' forecasts kept" in r.stdout
    assert not f_old.exists() and not f_gone.exists()
    assert f_picked.is_dir() and f_new.is_dir() and f_gone_recent.is_dir()
