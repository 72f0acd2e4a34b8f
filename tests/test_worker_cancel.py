"""Worker cancellation: a task still starting up is aborted at once, not forced after the grace period."""

from pathlib import Path


def test_cancel_during_slow_task_start_aborts_without_waiting_for_grace(tmp_path: Path) -> None:
    """A task that is still importing/loading (no cooperative region) is aborted at once on cancel."""
    import os
    import subprocess
    import sys
    import time

    from engine.events import read_events
    from engine.jobs import JobSpec

    job_dir = tmp_path / "ws" / "jobs" / "j1"
    job_dir.mkdir(parents=True)
    spec = JobSpec.create("baseline", ["SPY"], params={})
    spec.write(job_dir)
    # A fake task module whose import takes long, as torch + model loading do.
    code = (
        "import sys, time\n"
        "import engine.tasks.baseline as b\n"
        "def slow_run(spec, ctx):\n"
        "    time.sleep(30)\n"
        "b.run = slow_run\n"
        "from engine.worker import main\n"
        "sys.exit(main([sys.argv[1]]))\n"
    )
    script = tmp_path / "run_slow.py"
    script.write_text(code)
    env = {**os.environ, "FORECAST_CANCEL_GRACE_S": "20"}
    proc = subprocess.Popen([sys.executable, str(script), str(job_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline and not any(
            e.get("type") == "started" for e in read_events(job_dir / "events.jsonl").events):
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.time()
    proc.terminate()
    rc = proc.wait(timeout=10)
    took = time.time() - t0
    evs = read_events(job_dir / "events.jsonl").events
    assert rc == 143, proc.stderr.read().decode()[-2000:] if proc.stderr else rc
    assert took < 3, took
    err = [e for e in evs if e["type"] == "error"][-1]
    assert "forced" not in err["msg"] and "cancelled" in err["msg"]


async def test_spooled_spec_with_unknown_param_is_rejected(tmp_path: Path) -> None:
    """A hand-written spool file skips JobSpec.create; the engine still refuses unknown parameters."""
    import dataclasses

    from engine.controller import Engine, spool_submit
    from engine.jobs import JobSpec
    from store import Store

    ws = tmp_path / "ws"
    store = Store.open(ws)
    eng = Engine(ws, store=store, cpu_slots=1, poll_interval=0.05)
    await eng.start()
    try:
        good = JobSpec.create("baseline", ["SPY"], params={"horizon": [16]})
        bad = dataclasses.replace(good, params={"horizn": 16})
        spool_submit(ws, bad)
        import asyncio

        for _ in range(100):
            if (ws / "jobs" / bad.id / "rejected.txt").exists():
                break
            await asyncio.sleep(0.05)
        msg = (ws / "jobs" / bad.id / "rejected.txt").read_text()
        assert "unknown parameter 'horizn'" in msg and "did you mean" in msg
        assert eng.job(bad.id) is None
    finally:
        await eng.stop()
        store.close()
