"""The console's first frame does not wait for modules only a later view needs.

Why: the first frame (issue 16: ≤ 1 s from launch, bench/bench_console.py) includes the
interpreter's start, `forecast-console`'s argument parsing and importing the app; every module
loaded before it is paid by every launch. The first frame needs Textual, the app and the Stocks
screen; the job client, the spec's validation (engine.task_params, pydantic), the store's records,
plotext and the other screens come after it (when the workspace opens, or a screen is first shown);
numpy is needed only once the Forecast view opens, pandas and torch never.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.app import ForecastConsoleApp, mode_screen_class
from console.cli import console_args
from console.prefs import Prefs, load_prefs, prefs_path, save_prefs
from console.screens.base import ModeScreen

#: Run as `forecast-console --workspace WS` is, with a terminal driver (Textual's TEXTUAL_DRIVER, a
#: public setting) that prints the loaded modules as the first frame is written and ends the process.
FIRST_FRAME = """
import json, os, sys
from textual.drivers.headless_driver import HeadlessDriver

class FirstFrame(HeadlessDriver):
    @property
    def is_headless(self):
        return False  # frames are built and written as for a terminal

    def write(self, data):
        if data:
            print("FIRST " + json.dumps(sorted(sys.modules)), file=sys.__stdout__, flush=True)
            os._exit(0)

from console.cli import main
sys.exit(main())
"""

#: Loaded only after the first frame (or never, for the console).
NOT_BEFORE_FIRST_FRAME = (
    "numpy", "pandas", "torch", "pydantic", "plotext", "textual_plotext",
    "engine.task_params", "engine.param_fields", "engine.jobs", "engine.client", "console.job_mirror",
    "store.records", "console.commands", "console.decision_flows",
    *(where.rpartition(".")[0] for mode, where in ForecastConsoleApp.MODE_SCREENS.items() if mode != "stocks"),
    "console.screens.forecast_view", "console.screens.start_run", "console.screens.quit",
)


def test_importing_the_console_app_imports_no_numpy_pandas_or_torch() -> None:
    code = ("import sys, console.app; "
            "print(sorted(m for m in ('numpy', 'pandas', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_console_entry_reaches_its_first_frame_before_the_modules_later_views_need(tmp_path: Path) -> None:
    env = {**os.environ, "TEXTUAL_DRIVER": "__main__:FirstFrame", "COLUMNS": "120", "LINES": "40"}
    proc = subprocess.run([sys.executable, "-c", FIRST_FRAME, "--workspace", str(tmp_path / "ws"),
                           "--hyperparams", str(tmp_path / "hp")],
                          capture_output=True, text=True, env=env, timeout=60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("FIRST ")), None)
    assert line is not None, f"no first frame (rc {proc.returncode}): {proc.stderr[-2000:]}"
    loaded = set(json.loads(line[len("FIRST "):]))
    assert "console.screens.stocks" in loaded  # the frame is the Stocks screen's
    early = sorted(m for m in loaded for name in NOT_BEFORE_FIRST_FRAME if m == name or m.startswith(name + "."))
    assert early == []


def test_every_mode_names_its_screen_class() -> None:
    for mode, where in ForecastConsoleApp.MODE_SCREENS.items():
        cls = mode_screen_class(where)
        assert issubclass(cls, ModeScreen) and cls.MODE == mode
    with pytest.raises(TypeError, match="not a Screen class"):
        mode_screen_class("console.prefs.Prefs")


def test_the_console_launch_is_parsed_without_the_command_parsers() -> None:
    args = console_args(["-w", "ws", "--backend", "ray", "--no-warm"])
    assert args is not None and (args.command, args.workspace, args.backend, args.no_warm) == (None, "ws", "ray", True)
    assert console_args([]) is not None
    for argv in (["jobs"], ["-w", "ws", "runs"], ["--help"], ["--bogus"], ["--backend", "mars"], ["-w"]):
        assert console_args(argv) is None, argv  # the full parser reads (or refuses) these


def test_preferences_keep_known_strings_and_refuse_other_values() -> None:
    assert Prefs.from_doc({"theme": "textual-light", "later_setting": [1]}) == Prefs(theme="textual-light")
    for bad in ({"theme": 3}, ["theme"], "x"):
        with pytest.raises(ValueError):
            Prefs.from_doc(bad)
    prefs_path().parent.mkdir(parents=True, exist_ok=True)
    prefs_path().write_text('{"theme": 3, "run_kind": "train"}', encoding="utf-8")
    assert load_prefs() == Prefs()  # a bad file means the defaults
    save_prefs(run_kind="validate")
    save_prefs(theme="textual-light")
    assert load_prefs() == Prefs(theme="textual-light", run_kind="validate")


async def test_the_engine_services_starting_note_reaches_the_subtitle_not_stderr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """One reader of the note a starting service writes (engine.channel): the client that waits for
    the service hands each new note to the console (the header's subtitle), and prints nothing."""
    import asyncio

    from console.services import ConsoleServices
    from engine import channel
    from engine.gpu import FakeGpuSource
    from tests.helpers import wait_for

    monkeypatch.setenv("FORECAST_DATA", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    ws = tmp_path / "ws"
    app = ForecastConsoleApp(ConsoleServices(ws, hyperparams_dir=tmp_path / "hp", gpu_source=FakeGpuSource(1, 24.0)),
                             telemetry_interval=None, workspace_label="ws")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(app.ready.is_set, 30, "the workspace opened", pilot=pilot)
        client = app.services.engine.client
        note = "upgrading the run ledger to version 2: 2,000 / 9,000 runs"
        channel.note_starting(ws, note)  # as a starting service says it (this test plays that service)
        await asyncio.to_thread(client._heard, None)  # what JobClient.start does on its waiting thread
        await wait_for(lambda: app.sub_title == note, 5, "the note in the subtitle", pilot=pilot)
        channel.clear_starting(ws)
    assert "engine:" not in capfd.readouterr().err


async def test_after_startup_the_heap_is_frozen_and_the_runs_screen_waits_for_its_key(tmp_path: Path) -> None:
    """After startup the app freezes what is alive out of full collections (one policy, app.freeze_heap,
    undone with the app); the Runs screen is built by its key (Textual's mode switch), not before, and
    then reads and shows every run."""
    import gc

    from console.screens.runs import RunsScreen
    from tests.runs_fixture import offline_app, seed_runs, until

    ws, hp = tmp_path / "ws", tmp_path / "hp"
    seed_runs(ws, hp, extra_runs=4)  # 6 runs
    app = offline_app(ws, hp)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, app.ready.is_set, "the workspace opened")
        assert gc.get_freeze_count() > 0
        await until(pilot, lambda: not app.workers, "startup's work done")
        assert app.get_screen_for_mode("runs") is None
        await pilot.press("8")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the key shows the Runs screen")
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        await until(pilot, lambda: runs.complete and not runs.filling and runs.table.row_count == 6,
                    "its rows read and shown")
    assert gc.get_freeze_count() == 0  # undone with the app
