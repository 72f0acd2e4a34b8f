"""A long ledger upgrade is said, not silent: the engine service that upgrades a version-1 ledger as it
starts writes how far it is to its log and its starting note, and a client waiting for it passes each
new note on (the CLI: a line on stderr) instead of timing out on a service that is busy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import channel
from engine.client import JobClient
from engine.service import LOG_FILE
from store import Store
from store.ledger_file import UPGRADING
from tests.test_store_ledger import _answers, _version_1_workspace


def test_the_service_that_upgrades_a_version_1_ledger_says_so_in_its_log(tmp_path: Path) -> None:
    ws, expected = _version_1_workspace(tmp_path)
    client = JobClient(ws, hyperparams_dir=tmp_path / "hp")
    assert client.start()
    try:
        log = (ws / LOG_FILE).read_text()
        assert f"engine: {UPGRADING}: 0 / 9 runs\n" in log
        assert f"engine: {UPGRADING}: 9 / 9 runs; indexing their metrics\n" in log
        assert channel.starting_note(ws) is None and not (ws / channel.STARTING_FILE).exists()  # it answers now
    finally:
        client.stop()
    with Store.open(ws, readonly=True) as ro:
        assert ro._ledger.meta("schema_version") == "2" and _answers(ro) == expected


def test_a_waiting_client_passes_on_each_new_thing_a_starting_service_says(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    said: list[str] = []
    client = JobClient(ws, ensure=False, on_starting=said.append)
    assert client._heard(None) is None and said == []
    channel.note_starting(ws, f"{UPGRADING}: 2,000 / 9,000 runs")  # this process plays the starting service
    last = client._heard(None)
    assert last == f"{UPGRADING}: 2,000 / 9,000 runs" and client._heard(last) == last  # said once
    channel.note_starting(ws, f"{UPGRADING}: 4,000 / 9,000 runs")
    assert client._heard(last) == f"{UPGRADING}: 4,000 / 9,000 runs"
    assert said == [f"{UPGRADING}: 2,000 / 9,000 runs", f"{UPGRADING}: 4,000 / 9,000 runs"]
    # A note left by a service killed while starting says nothing.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (ws / channel.STARTING_FILE).write_text(json.dumps({"pid": int(gone.stdout), "text": "stale", "t": 0}))
    assert channel.starting_note(ws) is None and client._heard(said[-1]) == said[-1] and len(said) == 2
    channel.clear_starting(ws)
    assert not (ws / channel.STARTING_FILE).exists()
    JobClient(ws, ensure=False).on_starting(f"{UPGRADING}: 1 / 9 runs")  # the CLI's default: stderr
    assert capsys.readouterr().err == f"engine: {UPGRADING}: 1 / 9 runs\n"
