"""Hostile spool files: each is rejected with its reason (jobs/inbox/rejected/<name>), nothing of
it reaches the store, and the engine keeps running the other jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.controller import Engine
from engine.gpu import FakeGpuSource
from engine.intake import spool_submit
from engine.jobs import JobSpec
from store import Store
from tests.helpers import wait_for

pytestmark = pytest.mark.asyncio

GOOD = {"kind": "baseline", "symbols": ["AAPL"], "model": None, "params": {}, "priority": 0,
        "resources": {"gpus": 0.0, "vram_gb": 0.0, "cpus": 1}, "created_at": 1.0, "attempt": 1, "parent": None}


def _spec(jid: str, **over: object) -> bytes:
    return json.dumps({**GOOD, "id": jid, **over}).encode()


def _raw(jid: str, field: str, text: str) -> bytes:
    """A spec whose `field` is raw JSON text (values json.dumps cannot write, e.g. 1e400, NaN)."""
    body = json.dumps({**GOOD, "id": jid, field: "@@"})
    return body.replace('"@@"', text).encode()


def _hostile() -> dict[str, tuple[bytes | None, str]]:
    """marker name -> (spec.json bytes, or None for no file; a fragment of the expected reason)."""
    deep = "[" * 100_000 + "]" * 100_000
    h: dict[str, tuple[bytes | None, str]] = {
        "h-overflow-priority": (_raw("h-overflow-priority", "priority", "1e400"), "priority must be a finite integer"),
        "h-str-priority": (_spec("h-str-priority", priority="high"), "priority must be a finite integer"),
        "h-bool-priority": (_spec("h-bool-priority", priority=True), "priority must be a finite integer"),
        "h-float-priority": (_spec("h-float-priority", priority=1.5), "priority must be a finite integer"),
        "h-model-path": (_spec("h-model-path", model="../../../etc"), "model"),
        "h-model-type": (_spec("h-model-type", model=5), "model must be a name"),
        "h-symbol-path": (_spec("h-symbol-path", symbols=["../x"]), "looks like a path"),
        "h-symbols-str": (_spec("h-symbols-str", symbols="AAPL"), "symbols must be a list"),
        "h-symbols-empty": (_spec("h-symbols-empty", symbols=[]), "at least one symbol"),
        "h-id-mismatch": (_spec("someone-else"), "does not match inbox marker"),
        "h id spaces": (_spec("h id spaces"), "job id 'h id spaces' is not valid"),
        "..h-dots": (_spec("..h-dots"), "is not valid"),
        "h-unknown-field": (_spec("h-unknown-field", evil=1), "unknown job spec field(s): evil"),
        "h-params-list": (_spec("h-params-list", params=[1, 2]), "params must be an object"),
        "h-unknown-param": (_spec("h-unknown-param", params={"horizn": 16}), "unknown parameter 'horizn'"),
        "h-param-type": (_spec("h-param-type", params={"horizon": "16"}), "horizon"),
        "h-param-negative": (_spec("h-param-negative", params={"horizon": -1}), "horizon"),
        "h-param-huge-string": (_spec("h-param-huge-string", params={"span": "x" * 70_000}), "at most 64 KB"),
        "h-huge-spec": (_spec("h-huge-spec", params={"span": "v", "methods": ["naive"] * 200_000}), "larger than 1024 KB"),
        "h-recursion": (_raw("h-recursion", "params", json.dumps({"methods": "@@"}).replace('"@@"', deep)),
                        "nests too deeply"),
        "h-bad-json": (b'{"id": "h-bad-json", ', "not valid JSON"),
        "h-empty": (b"", "not valid JSON"),
        "h-no-spec": (None, "cannot read spec.json"),
        "h-array": (b"[1, 2, 3]", "must be a JSON object"),
        "h-kind-shell": (_spec("h-kind-shell", kind="rm -rf /"), "unknown job kind"),
        "h-kind-type": (_spec("h-kind-type", kind=5), "kind must be a string"),
        "h-gpus-negative": (_spec("h-gpus-negative", resources={"gpus": -1}), "non-negative"),
        "h-gpus-overflow": (_raw("h-gpus-overflow", "resources", '{"gpus": 1e400}'), "resources.gpus must be a finite"),
        "h-resources-key": (_spec("h-resources-key", resources={"disk": 1}), "resources must be an object"),
        "h-created-nan": (_raw("h-created-nan", "created_at", "NaN"), "created_at must be a finite number"),
        "h-attempt-zero": (_spec("h-attempt-zero", attempt=0), "attempt must be >= 1"),
        "h-parent-path": (_spec("h-parent-path", parent="../../x"), "parent job id"),
        "h-name-path": (_spec("h-name-path", kind="pipeline", params={"name": "../../evil"}), "'../../evil' is not valid"),
        "h-not-utf8": (b"\xff\xfe\x00bad", "not valid JSON"),
        "h-param-nan": (_raw("h-param-nan", "params", '{"span": NaN}'), "params must be JSON-serialisable"),
    }
    return h


async def test_hostile_spool_specs_are_rejected_with_reasons_while_jobs_run(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECAST_TEST_HOOKS", "1")
    ws = tmp_path / "ws"
    store = Store.open(ws, fsync=False, hyperparams_dir=tmp_path / "hp")
    eng = Engine(ws, store=store, cpu_slots=2, poll_interval=0.02, validate_symbols=False,
                 gpu_source=FakeGpuSource(0))
    await eng.start()
    try:
        before = JobSpec.create("baseline", ["AAPL"], params={"_test": {"steps": 6, "sleep": 0.05}})
        spool_submit(ws, before)
        hostile = _hostile()
        assert len(hostile) >= 30
        inbox = ws / "jobs" / "inbox"
        for name, (raw, _) in hostile.items():
            if raw is not None:
                (ws / "jobs" / name).mkdir(parents=True, exist_ok=True)
                (ws / "jobs" / name / "spec.json").write_bytes(raw)
            (inbox / name).touch()
        after = JobSpec.create("baseline", ["MSFT"], params={"_test": {"steps": 2}})
        spool_submit(ws, after)
        await wait_for(lambda: all((j := eng.job(s.id)) is not None and j.finished for s in (before, after)),
                       timeout=30, what="the good jobs to finish")
        assert eng.job(before.id).state == "succeeded" and eng.job(after.id).state == "succeeded"
        rejected = inbox / "rejected"
        for name, (_, why) in hostile.items():
            f = rejected / name
            assert f.is_file(), f"{name} was not rejected"
            text = f.read_text()
            assert why in text, f"{name}: {text!r} does not say {why!r}"
            assert not (inbox / name).exists()
            assert store.get_job(name) is None
        assert (ws / "jobs" / "h-model-path" / "rejected.txt").is_file()  # sweeps/pipelines wait on this
        assert not eng.store_errors and eng.ticks > 0
        assert not list(tmp_path.rglob("evil*"))
    finally:
        await eng.stop()
        store.close()
