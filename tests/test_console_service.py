"""Consoles are live clients of the workspace's engine service: two consoles (Pilot) both follow a job
started from a shell and either can cancel it; the shell's store writes work while a console is open."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from console.widgets.loss_chart import LossChart
from store import Store
from tests.helpers import wait_for
from tests.test_console_app import _seed_pick_and_comparison, env, make_app  # noqa: F401

ENTRY = "import sys; from console.cli import main; sys.exit(main(sys.argv[1:]))"


def shell(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FORECAST_TEST_HOOKS": "1"})


async def test_two_consoles_follow_a_shell_job_with_loss_points_and_either_cancels(
        env: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")  # the engine the first console starts runs the scripted job
    one, two = make_app(env), make_app(env)
    async with one.run_test(size=(120, 40)) as p1, two.run_test(size=(120, 40)) as p2:
        await asyncio.wait_for(one.ready.wait(), 30)
        await asyncio.wait_for(two.ready.wait(), 30)
        assert one.services.engine is not None and two.services.engine is not None  # both live, neither read-only
        r = await asyncio.to_thread(shell, "run", "baseline", "--stocks", "SPY", "--detach",
                                    "--param", '_test={"steps": 600, "sleep": 0.05}')
        assert r.returncode == 0, r.stdout + r.stderr
        jid = r.stdout.split()[1]
        for app, pilot in ((one, p1), (two, p2)):
            await wait_for(lambda app=app: len(app.services.curve(jid)) >= 3, 30, "loss points in a console", pilot=pilot)
            app.open_live(jid)
            await wait_for(lambda app=app: getattr(app.screen, "job_id", None) == jid, 10, "Live on the shell's job",
                           pilot=pilot)
            await wait_for(lambda app=app: app.screen.query_one(LossChart).n_points > 0, 10, "the live chart", pilot=pilot)
        await p2.press("2")  # the second console's Queue cancels the job
        await wait_for(lambda: type(two.screen).__name__ == "QueueScreen", 5, "queue screen", pilot=p2)
        table = two.screen.table
        await wait_for(lambda: jid in table.row_ids, 5, "the job's row", pilot=p2)
        table.move_cursor(row=table.get_row_index(jid))
        await p2.pause(0.1)
        await p2.press("c")
        await wait_for(lambda: type(two.screen).__name__ == "ConfirmScreen", 5, "the cancel question", pilot=p2)
        await p2.press("y")
        for app, pilot in ((one, p1), (two, p2)):
            await wait_for(lambda app=app: getattr(app.services.job(jid), "state", None) == "cancelled", 20,
                           "both consoles to show the job cancelled", pilot=pilot)


async def test_promote_rollback_and_baseline_from_a_shell_while_a_console_is_open(env: dict[str, Path]) -> None:  # noqa: F811
    _seed_pick_and_comparison(env["ws"], env["hp"])
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 30)
        assert app.services.engine is not None
        r = await asyncio.to_thread(shell, "promote", "--model", "toto", "--symbol", "SPY")
        assert r.returncode == 0, r.stderr
        assert (env["hp"] / "toto" / "SPY.json").is_file()
        data: Any = await app.services.screen_data()
        assert [p.symbol for p in data.promotions] == ["SPY"]  # the open console reads it at once
        r = await asyncio.to_thread(shell, "rollback", "--model", "toto", "--symbol", "SPY")
        assert r.returncode == 0 and "removed" in r.stdout, r.stderr
        assert not (env["hp"] / "toto" / "SPY.json").exists()
        r = await asyncio.to_thread(shell, "baseline", "--stocks", "AAPL", "--horizon", "1")
        assert r.returncode == 0, r.stderr
        with Store.open(env["ws"], readonly=True) as st:
            assert st.baselines(symbol="AAPL", horizon=1)
        await pilot.pause(0)


async def test_a_console_opens_live_when_the_service_it_found_ends_before_it_subscribes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle service (no client, no job) ends by itself, and it may do so between answering the console's
    start probe and the console's subscription (a console busy drawing on a loaded machine). The console
    then starts one again and subscribes: it opens live, not read-only. Here the stall is made certain: the
    first start returns only once the service it started has stopped answering."""
    from console.job_mirror import EngineMirror

    monkeypatch.setenv("FORECAST_ENGINE_IDLE_S", "0.3")
    mirror = EngineMirror(tmp_path / "ws", poll_interval=0.05)
    real_start, starts = mirror.client.start, []

    def start_then_stall() -> bool:
        started = real_start()
        starts.append(started)
        deadline = time.monotonic() + 30
        while len(starts) == 1 and mirror.client.running():  # the first: until that service has gone idle
            assert time.monotonic() < deadline, "the idle service did not end"
            time.sleep(0.05)
        return started

    mirror.client.start = start_then_stall  # type: ignore[method-assign]
    await mirror.open()
    try:
        assert len(starts) == 2 and mirror.connected.is_set()
        assert mirror.client.status()["clients"] >= 1  # type: ignore[index]  # the subscription
    finally:
        await mirror.close()
