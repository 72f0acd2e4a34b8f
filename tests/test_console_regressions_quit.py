"""Regressions wired end to end (store table, engine write, console screen) and the quit dialog.

Real parts: a real TinyDB store, the real Engine with worker subprocesses, the real regression task
on naive-model picks (no torch), the real Textual app driven by Pilot.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from console.app import ForecastConsoleApp
from console.services import ConsoleServices
from console.widgets.table import KeyedTable
from engine.gpu import FakeGpuSource
from store.storage import StoreError
from tests.helpers import notices, wait_for
from tests.test_eval_support import write_csv


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """One synthetic symbol falling steadily (drift beats seasonal-naive there), tmp workspace."""
    data = tmp_path / "data"
    write_csv(data / "AAA.csv", n=300, seed=1, drift=-0.01, vol=0.001)
    ws, hp = tmp_path / "ws", tmp_path / "hp"
    for k, v in {"FORECAST_DATA": data, "FORECAST_WORKSPACE": ws, "FORECAST_HYPERPARAMS": hp}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    return {"data": data, "ws": ws, "hp": hp}


def make_app(env: dict[str, Path]) -> ForecastConsoleApp:
    svc = ConsoleServices(env["ws"], hyperparams_dir=env["hp"], gpu_source=FakeGpuSource(1, 24.0),
                          engine_kwargs={"poll_interval": 0.05})
    return ForecastConsoleApp(svc, telemetry_interval=None)


def _row(model: str = "toto", symbol: str = "SPY", **kw: Any) -> dict[str, Any]:
    return {"symbol": symbol, "model": model, "horizon": 16, "metric": "mae_pct", "current": 5.0,
            "previous": 4.0, "flagged": True, "proposed_jobs": [], **kw}


def test_store_regressions_upsert_by_model_symbol_metric_and_refuse_bad_rows(tmp_path: Path) -> None:
    from store import Store

    with Store.open(tmp_path / "ws", hyperparams_dir=tmp_path / "hp") as st:
        st.put_regressions([_row(), _row(symbol="AAPL", flagged=False)])
        st.put_regressions([_row(current=6.0)])  # same (model, symbol, metric): replaced, not added
        rows = st.regressions()
        assert len(rows) == 2 and st.counts()["regressions"] == 2
        assert [r.current for r in st.regressions(symbol="SPY")] == [6.0]
        assert st.regressions(model="kronos") == []
        for bad, msg in (([{"symbol": "SPY", "model": "toto"}], "metric: Field required"),
                         ([_row(model="gpt")], "model"), ([_row(symbol="../x")], "symbol"),
                         ([_row(proposed_jobs="train")], "proposed_jobs"), (_row(), "list of records")):
            with pytest.raises(StoreError, match=msg):
                st.put_regressions(bad)  # type: ignore[arg-type]
        assert [r.current for r in st.regressions(symbol="SPY")] == [6.0]  # nothing changed
    with Store.open(tmp_path / "ws", readonly=True) as ro:
        assert len(ro.regressions()) == 2
        with pytest.raises(StoreError, match="read-only"):
            ro.put_regressions([_row()])


def _seed_naive_picks(ws: Path, hp: Path) -> None:
    """Previous pick drift (good on a steady fall), current pick seasonal (worse): flagged."""
    from store import Store

    with Store.open(ws, hyperparams_dir=hp) as st:
        for method in ("drift", "seasonal"):
            st.set_pick("naive", "AAA", {"config": {"method": method}, "selection_metric": "mae_pct", "horizon": 8})


async def test_regression_job_rows_reach_store_and_screen_queues_proposal(env: dict[str, Path]) -> None:
    _seed_naive_picks(env["ws"], env["hp"])
    app = make_app(env)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("5")
        screen = app.screen
        detail = screen.query_one("#regress-detail")
        await wait_for(lambda: "Press c" in str(detail.render()), 5, "empty-state hint naming the key", pilot=pilot)
        assert app.queue_jobs("regression", ["AAA"], None,
                              {"models": ["naive"], "horizon": 8, "context": 32, "preset": "tiny"}), notices(app)
        job = app.services.jobs()[-1]
        await wait_for(lambda: app.services.job(job.id).state not in ("queued", "running"), 25,
                       "regression job", pilot=pilot)
        assert app.services.job(job.id).state == "succeeded", app.services.job(job.id).reason
        # engine -> store: the task's rows, tagged with the job
        await wait_for(lambda: bool(app.services.store.regressions()), 5, "store rows", pilot=pilot)
        (row,) = app.services.store.regressions()
        assert row.job_id == job.id and row.flagged and row.worse_than_previous
        # naive cannot be trained: flagged with the reason, no train/validate proposed
        assert row.proposed_jobs == [] and "naive has nothing to train" in row.reason
        # store -> screen
        table = screen.query_one(KeyedTable)
        await wait_for(lambda: table.row_count == 1, 5, "regression row on screen", pilot=pilot)
        key = "naive|AAA|mae_pct"
        assert table.raw(key, "flag") is True
        assert table.raw(key, "d_prev") == pytest.approx(row.delta_vs_previous_pct)
        assert "1 flagged of 1" in str(detail.render())
        # t has nothing to queue for a naive row
        before = {j.id for j in app.services.jobs()}
        await pilot.press("t")
        await pilot.pause()
        assert {j.id for j in app.services.jobs()} == before
        assert any("nothing to queue" in n.message for n in app._notifications)


def _seed_flagged_row(ws: Path, hp: Path) -> None:
    """A flagged toto row whose proposal is a scripted retrain (slow enough to kill the service during
    it) then a scripted re-validate (the worker's test hook stands in for training)."""
    from engine.jobs import JobSpec
    from store import Store

    train = JobSpec.create("train", ["AAA"], "toto", params={"_test": {"steps": 20, "sleep": 0.1}})
    val = JobSpec.create("validate", ["AAA"], "toto", params={"_test": {"steps": 1}})
    with Store.open(ws, hyperparams_dir=hp) as st:
        st.put_regressions([_row("toto", "AAA", proposed_jobs=[train.to_dict(), val.to_dict()])], job_id="check-1")


async def test_regression_chain_is_one_job_that_survives_a_service_restart_and_t_queues_it_once(
        env: dict[str, Path]) -> None:
    """`t` queues the proposed retrain → re-validate as one pipeline job and records it on the row; `t`
    again queues nothing; the console quits and the engine service is SIGKILLed mid-retrain; a new
    service finishes the chain (re-validate after the retrain); a restarted console shows it done and
    its `t` still queues nothing."""
    from engine.client import JobClient

    _seed_flagged_row(env["ws"], env["hp"])
    key = "toto|AAA|mae_pct"
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("5")
        screen = app.screen
        await wait_for(lambda: screen.table.row_count == 1, 5, "the flagged row", pilot=pilot)
        await pilot.press("t")
        await pilot.press("t")
        await pilot.pause()
        jobs = app.services.jobs()
        assert [j.kind for j in jobs] == ["pipeline"]  # one job, not two, and no bare train/validate
        pipe = jobs[0]
        steps = app.services.engine.spec(pipe.id).params["steps"]
        assert [(s["kind"], s["model"]) for s in steps] == [("train", "toto"), ("validate", "toto")]
        assert any("already carried out" in n.message for n in app._notifications)
        await wait_for(lambda: app.services.store.regressions()[0].follow_up == pipe.id, 10,
                       "the follow-up recorded on the row", pilot=pilot)
        await wait_for(lambda: any(j.kind == "train" and j.state == "running" and j.progress_done
                                          for j in app.services.jobs()), 30, "the retrain running", pilot=pilot)
    # console gone; now the service dies in the middle of the retrain
    jc = JobClient(env["ws"], poll_interval=0.05)
    first = jc.status()
    assert first is not None
    os.kill(first["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while jc.running():
        assert time.monotonic() < deadline, "the killed service's socket did not vanish"
        time.sleep(0.05)
    rec = jc.wait(pipe.id, timeout=90)  # this request starts a new service
    assert rec["state"] == "succeeded", rec
    assert jc.status()["pid"] != first["pid"]
    kids = {j["kind"]: j for j in jc.jobs() if j["kind"] != "pipeline"}
    assert set(kids) == {"train", "validate"} and all(j["state"] == "succeeded" for j in kids.values())
    assert kids["validate"]["created_at"] >= kids["train"]["finished_at"]  # re-validate only after the retrain
    app = make_app(env)
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        await pilot.press("5")
        screen = app.screen
        await wait_for(lambda: "succeeded" in str(screen.table.raw(key, "action") or ""), 10,
                       "the row showing its follow-up done", pilot=pilot)
        before = {j.id for j in app.services.jobs()}
        await pilot.press("t")
        await pilot.pause()
        assert {j.id for j in app.services.jobs()} == before
        assert any(pipe.id in n.message and "already carried out" in n.message for n in app._notifications)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("choice", ["leave", "cancel"])
async def test_quit_with_running_job(env: dict[str, Path], choice: str) -> None:
    """Leave (the default button) keeps the detached worker alive; cancel ends the job cancelled."""
    app = make_app(env)
    pid = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await asyncio.wait_for(app.ready.wait(), 10)
            assert app.queue_jobs("train", ["AAA"], "toto", {"_test": {"sleep": 0.2, "steps": 100}}), notices(app)
            job = app.services.jobs()[-1]
            await wait_for(lambda: app.services.job(job.id).pid is not None
                           and app.services.job(job.id).state == "running", 10, "running job", pilot=pilot)
            pid = int(app.services.job(job.id).pid)
            await pilot.press("q")
            await wait_for(lambda: type(app.screen).__name__ == "QuitScreen", 5, "quit dialog", pilot=pilot)
            assert "1 job(s) still running" in str(app.screen.query_one("#quit-body").render())
            await wait_for(lambda: getattr(app.screen.focused, "id", None) == "leave", 5,
                           "Leave running focused as the default", pilot=pilot)
            await pilot.press("enter" if choice == "leave" else "c")  # enter = the focused default
            await wait_for(lambda: app.return_value is not None, 20, "app exit", pilot=pilot)
        assert app.return_value == 0
        from store import Store

        with Store.open(env["ws"], readonly=True) as ro:
            rec = ro.get_job(job.id)
        if choice == "leave":
            assert _alive(pid) and rec["state"] == "running"
        else:
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not _alive(pid) and rec["state"] == "cancelled"
    finally:
        if pid is not None and _alive(pid):
            os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)


async def test_run_form_shows_every_parameter_of_the_kind_and_sends_only_what_was_typed(env: dict[str, Path]) -> None:
    """The form's fields are the kind's parameter model (calibrate included); empty fields are not sent."""
    from textual.widgets import Input, Select

    from console.screens.start_run import FORM_KINDS, StartRunScreen
    from engine import param_fields, task_params
    from engine.jobs import KINDS

    assert set(FORM_KINDS) == set(KINDS)
    app = ForecastConsoleApp(ConsoleServices(env["ws"], hyperparams_dir=env["hp"]), telemetry_interval=None,
                             start_engine=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.ready.wait(), 10)
        form = StartRunScreen(["AAA"], "baseline")
        await app.push_screen(form)
        await pilot.pause()
        form.query_one("#run-horizon", Input).value = "1, 16"
        form.query_one("#run-context", Input).value = "16"
        params, _ = form.build_params("baseline")
        assert params == {"horizon": [1, 16], "context": 16, "span": "test", "tier_span": "pretest"}
        assert not form.query("#run-preset") and not form.query("#run-epochs")  # a baseline reads neither
        for kind in ("train", "validate", "compare", "sweep", "calibrate", "regression", "pipeline"):
            form.query_one("#run-kind", Select).value = kind
            expected = {f.name for f in param_fields.fields(kind) if not f.hidden}

            def shown() -> set[str]:
                return {w.id.removeprefix("run-") for w in form.query("#run-params > *") if w.id}

            await wait_for(lambda want=expected: shown() == want, 10, f"the {kind} fields", pilot=pilot)
            await pilot.pause()  # let the new fields finish mounting (a list takes its value on mount)
            params, _ = form.build_params(kind)
            assert params.get("preset") == "tiny", kind  # a list with a default sends it
            assert all(not isinstance(v, str) or v for v in params.values())
            task_params.check(kind, params)
