"""Session-wide test settings: engine services started by tests idle out quickly, every service a
test started in this process is stopped when the test ends (by its own Popen handle, never by name),
console preferences live in a per-test file, and the process environment is restored after each test
(the CLI entry point sets $FORECAST_WORKSPACE/$FORECAST_DATA/... for its own process and the workers it
starts; a test calling it in-process must not hand them to the tests after it)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

# A CLI subprocess starts its workspace's engine service on demand; after the test it exits by
# itself this soon (the default, 30 s, is for people).
os.environ.setdefault("FORECAST_ENGINE_IDLE_S", "2")

# Tests send Ctrl-C (SIGINT) to CLI subprocesses to check that it detaches. A shell starts a background
# job (`pytest ... &`, nohup) with SIGINT ignored, and an ignored signal stays ignored across exec, so
# the CLI would never see it. Handling it here makes the children start with the default disposition.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _own_console_prefs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's consoles keep their preferences (theme, last form kind) in a file of their own, so
    a test that changes the theme neither touches the user's file nor the next test's console."""
    monkeypatch.setenv("FORECAST_CONSOLE_PREFS", str(tmp_path_factory.mktemp("prefs") / "console.json"))


@pytest.fixture(autouse=True)
def _stop_spawned_services() -> Iterator[None]:
    yield
    from engine.client import SPAWNED

    for proc in SPAWNED:
        if proc.poll() is None:
            proc.terminate()  # the service stops cleanly on SIGTERM; its jobs were the test's to end
    for proc in SPAWNED:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    SPAWNED.clear()
