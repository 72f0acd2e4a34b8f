"""Ray backend: fractional-GPU packing, event streaming, cancel, lost actors, shipped workspaces.

One local Ray instance for the whole file (`ray.init(num_cpus=6, num_gpus=2)`: the GPUs are
logical, which is all Ray's admission looks at; 6 CPUs so that the CPU count does not hide the GPU
packing). Jobs are real `engine.worker` processes started by real actors; the scripted test hook
(FORECAST_TEST_HOOKS=1) makes them run for a known time, and the numpy-only baseline task gives
real results to compare with the local backend.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.backends.base import ExitStatus, Handle
from engine.backends.ray_backend import (
    INSTALL_HINT,
    RayBackend,
    RayBackendError,
    gpu_fraction,
    import_ray,
    make_backend,
    ray_options,
)
from engine.backends.ray_bundle import make_bundle
from engine.gpu import GpuSource
from engine.jobs import JobSpec, Resources
from tests.helpers import job_states, wait_for

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

NS = "forecast-console-test"
HOOK_ENV = {"FORECAST_TEST_HOOKS": "1", "FORECAST_HEARTBEAT_S": "1", "FORECAST_CANCEL_GRACE_S": "4"}


# ---- pure parts (no cluster) ----------------------------------------------------------------
@pytest.mark.parametrize(("res", "want"), [
    (Resources(vram_gb=30), 0.4), (Resources(vram_gb=60), 0.75), (Resources(vram_gb=40), 0.5),
    (Resources(vram_gb=0.5), 0.05), (Resources(vram_gb=80), 1.0), (Resources(vram_gb=100), 2.0),
    (Resources(gpus=1, vram_gb=8), 0.1), (Resources(gpus=2), 2.0), (Resources(gpus=0.3), 0.3),
    (Resources(), 0.0),
])
def test_gpu_fraction_rounds_up_to_a_twentieth(res: Resources, want: float) -> None:
    assert gpu_fraction(res, 80.0) == want


def test_gpu_fraction_other_gpu_size_and_bad_size() -> None:
    assert gpu_fraction(Resources(vram_gb=30), 40.0) == 0.75
    assert ray_options(JobSpec.create("baseline", ["SPY"], resources={"vram_gb": 30, "cpus": 2})) == {
        "num_cpus": 2.0, "num_gpus": 0.4}
    with pytest.raises(ValueError, match="positive"):
        gpu_fraction(Resources(vram_gb=1), 0)


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(RayBackendError) as err:
        import_ray()
    assert "./setup.sh --ray" in str(err.value) and "pip install -e '.[ray]'" in str(err.value)
    assert isinstance(err.value, OSError)  # the CLI prints OSErrors as one line
    with pytest.raises(RayBackendError, match="setup.sh --ray"):
        make_backend("ray", None, Path("."))
    assert INSTALL_HINT in str(err.value)


def test_make_backend_local_and_address_misuse(tmp_path: Path) -> None:
    assert make_backend("local", None, tmp_path).name == "local"
    with pytest.raises(ValueError, match="--address"):
        make_backend("local", "auto", tmp_path)


def test_bundle_carries_spec_csvs_and_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile
    from io import BytesIO

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "SPY.csv").write_text("timestamp,close\n2020-01-01,1\n")
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(tmp_path / "nohp"))
    from store import Store

    with Store.open(tmp_path, hyperparams_dir=tmp_path / "nohp") as st:  # the writer stays open: a live ledger
        rid = st.log_run("toto", "SPY", {}, {"val_mae_pct": 1.0})
        spec = JobSpec.create("baseline", ["SPY", "AAPL"])
        with zipfile.ZipFile(BytesIO(make_bundle(spec, tmp_path))) as zf:
            names = set(zf.namelist())
            assert json.loads(zf.read(f"jobs/{spec.id}/spec.json"))["id"] == spec.id
            assert zf.read("data/SPY.csv").startswith(b"timestamp,close")  # the workspace CSV wins
            node = tmp_path / "node"
            zf.extractall(node)
    assert {"store.json", "ledger.db", "data/AAPL.csv"} <= names
    with Store.open(node, readonly=True) as ro:  # the node's tasks read the shipped runs
        assert ro.get_run(rid)["run_id"] == rid


# ---- on a local Ray cluster ---------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if not HAVE_RAY:
        pytest.skip("ray is not installed (./setup.sh --ray)")
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=6, num_gpus=2, namespace=NS, include_dashboard=False, log_to_driver=False,
             object_store_memory=80 * 1024 * 1024, configure_logging=False,
             # no idle workers started up front: every job gets its own actor process anyway
             _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False})
    yield ray
    ray.shutdown()


def _new_job(ws: Path, params: dict[str, Any] | None = None, vram: float = 0.0, kind: str = "baseline",
             symbols: tuple[str, ...] = ("SPY",)) -> tuple[JobSpec, Path]:
    spec = JobSpec.create(kind, list(symbols), params=params or {}, resources={"gpus": 1 if vram else 0,
                                                                              "vram_gb": vram})
    job_dir = ws / "jobs" / spec.id
    job_dir.mkdir(parents=True)
    spec.write(job_dir)
    return spec, job_dir


def _events(job_dir: Path) -> list[dict[str, Any]]:
    """Every event of the job, its rotated segments included (engine.eventlog)."""
    from engine.events import read_events

    path = job_dir / "events.jsonl"
    return read_events(path, 0).events if path.exists() else []


def _wait(backend: RayBackend, handles: list[Handle], timeout: float = 30.0,
          on_tick: Any = None) -> dict[str, ExitStatus]:
    out: dict[str, ExitStatus] = {}
    deadline = time.time() + timeout
    while len(out) < len(handles):
        assert time.time() < deadline, f"jobs did not finish in {timeout}s: {len(out)}/{len(handles)}"
        for h in handles:
            if h.job_id not in out:
                st = backend.poll(h)
                if st is not None:
                    out[h.job_id] = st
        if on_tick:
            on_tick()
        time.sleep(0.1)
    return out


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (./setup.sh --ray)")
async def test_engine_sweep_packs_fractional_gpus_and_streams_events(cluster: Any, tmp_path: Path) -> None:
    """4 jobs at 30 GB (0.4 GPU) are placed together on 2 logical GPUs; a 60 GB one (0.75) waits for room.

    Each small job stays running after its steps until the test opens a gate, so "placed together" is
    what Ray decided, not a timing: all four are running at once (possible only with 4 x 0.4 of the 2
    GPUs reserved, 0.4 left), and the big one cannot start then. It starts after two small ones ended."""
    from engine.controller import Engine
    from store import Store

    store = Store.open(tmp_path)
    backend = RayBackend(tmp_path, namespace=NS)
    engine = Engine(tmp_path, store=store, backend=backend, cpu_slots=1, env=HOOK_ENV, poll_interval=0.1,
                    heartbeat_s=1.0, gpu_source=_NoGpu())
    await engine.start()
    q = engine.subscribe()
    gate = tmp_path / "gate"
    try:
        hook = {"steps": 4, "hold": str(gate)}
        small = [JobSpec.create("baseline", ["SPY"], params={"_test": hook}, resources={"gpus": 1, "vram_gb": 30})
                 for _ in range(4)]
        big = JobSpec.create("baseline", ["SPY"], params={"_test": {"steps": 1, "result": {"summary": {"big": 1}}}},
                             resources={"gpus": 1, "vram_gb": 60})
        for s in [*small, big]:
            engine.submit(s)

        def events(s: JobSpec) -> list[dict[str, Any]]:
            return _events(tmp_path / "jobs" / s.id)

        def stepped(s: JobSpec) -> bool:
            return sum(e["type"] == "progress" for e in events(s)) == 4

        # none of the four can end before the gate opens: all four at their last step = running together
        await wait_for(lambda: all(stepped(s) for s in small), 60, "the four 0.4-GPU jobs running together",
                       detail=job_states(engine))
        assert all(json.loads((tmp_path / "jobs" / s.id / "ray.json").read_text())["num_gpus"] == 0.4 for s in small)
        await wait_for(lambda: cluster.available_resources().get("GPU", 0.0) == pytest.approx(0.4), 10,
                       "Ray's view: 1.6 of the 2 GPUs reserved by the four",
                       detail=lambda: str(cluster.available_resources()))
        assert not any(e["type"] == "started" for e in events(big))  # 0.2 free per GPU: no room for 0.75
        gate.touch()
        await wait_for(lambda: all(engine.job(s.id) and engine.job(s.id).finished  # type: ignore[union-attr]
                                   for s in [*small, big]), 60, "every job to end", detail=job_states(engine))
        states = {s.id: engine.job(s.id) for s in [*small, big]}
        assert all(st.state == "succeeded" for st in states.values()), states  # type: ignore[union-attr]
        spans = {}
        for s in [*small, big]:
            ev = events(s)
            t_start = next(e["t"] for e in ev if e["type"] == "started")
            t_end = next(e["t"] for e in ev if e["type"] == "result")
            spans[s.id] = (t_start, t_end)
            assert [e["type"] for e in ev].count("progress") == (4 if s in small else 1)
        # the big one started only after at least two small ones (one whole GPU) had ended: causal (their
        # results are written before their actors end and give back their shares), not a timing
        ends = sorted(b for _, b in (spans[s.id] for s in small))
        assert spans[big.id][0] >= ends[1]
        # events reached subscribers through tail -> state (progress + loss + the final state)
        kinds: set[str] = set()
        while not q.empty():
            kinds.add(q.get_nowait().kind)
        assert {"progress", "loss", "state"} <= kinds
        assert len(engine.curve(small[0].id)) == 4
        rec = store.get_job(big.id)
        assert rec is not None and rec["state"] == "succeeded" and rec["backend"] == "ray"
    finally:
        gate.touch()
        await engine.stop()
        store.close()


class _NoGpu(GpuSource):
    """The driver's own GPUs do not matter for Ray; this machine has none anyway."""

    def snapshot(self) -> Any:
        from engine.gpu import Telemetry

        return Telemetry(available=False, message="no GPU")


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (./setup.sh --ray)")
def test_cancel_is_graceful_then_forced(cluster: Any, tmp_path: Path) -> None:
    import psutil

    backend = RayBackend(tmp_path, namespace=NS)
    spec_a, dir_a = _new_job(tmp_path, {"_test": {"steps": 200, "sleep": 0.1}})
    spec_b, dir_b = _new_job(tmp_path, {"_test": {"steps": 1, "ignore_term": True}})
    ha = backend.submit(spec_a, dir_a, dict(HOOK_ENV))
    hb = backend.submit(spec_b, dir_b, {**HOOK_ENV, "FORECAST_CANCEL_GRACE_S": "60"})
    deadline = time.time() + 20
    while not all(any(e["type"] == "progress" for e in _events(d)) for d in (dir_a, dir_b)):
        assert time.time() < deadline, "jobs did not start"
        for h in (ha, hb):
            assert backend.poll(h) is None
        time.sleep(0.1)
    pid_b = next(e["pid"] for e in _events(dir_b) if e["type"] == "started")
    backend.cancel(ha, grace_s=10.0)
    backend.cancel(hb, grace_s=0.5)  # ignores SIGTERM: the actor is killed after 0.5 s
    out = _wait(backend, [ha, hb], timeout=20)
    assert out[spec_a.id].code == 143  # the worker stopped at a safe point
    assert [e["type"] for e in _events(dir_a)][-1] == "error"
    assert _events(dir_a)[-1]["type"] == "error" and "ancel" in _events(dir_a)[-1]["msg"]
    assert out[spec_b.id].code is None and "cancel" in out[spec_b.id].reason
    # the orphaned worker of the killed actor goes too (its watchdog)
    deadline = time.time() + 8
    while psutil.pid_exists(pid_b) and psutil.Process(pid_b).status() != psutil.STATUS_ZOMBIE:
        assert time.time() < deadline, "worker of a killed actor survived"
        time.sleep(0.2)


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (./setup.sh --ray)")
def test_cancel_while_waiting_for_resources_and_dead_actor(cluster: Any, tmp_path: Path) -> None:
    """A job Ray cannot place yet is dropped at once; a job whose actor dies is reported dead."""
    backend = RayBackend(tmp_path, namespace=NS)
    spec_big, dir_big = _new_job(tmp_path, {"_test": {"steps": 1}}, vram=500)  # 7 GPUs: never fits here
    spec_run, dir_run = _new_job(tmp_path, {"_test": {"steps": 100, "sleep": 0.1}})
    h_big = backend.submit(spec_big, dir_big, dict(HOOK_ENV))
    h_run = backend.submit(spec_run, dir_run, dict(HOOK_ENV))
    assert h_big.info["num_gpus"] == 7.0
    deadline = time.time() + 20
    while not any(e["type"] == "progress" for e in _events(dir_run)):
        assert time.time() < deadline
        assert backend.poll(h_run) is None and backend.poll(h_big) is None
        time.sleep(0.1)
    backend.cancel(h_big, grace_s=5)
    st_big = _wait(backend, [h_big], timeout=5)[spec_big.id]
    assert st_big.code is None and _events(dir_big) == []  # never started
    import ray

    ray.kill(ray.get_actor("fc-job-" + spec_run.id, namespace=NS))  # as if its node went away
    st = _wait(backend, [h_run], timeout=10)[spec_run.id]
    assert st.code is None and not st.ok and "Ray actor died" in st.reason


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (./setup.sh --ray)")
def test_shipped_workspace_and_reattach_give_the_local_result(cluster: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a shared path the job runs in a node-local workspace; events stream back, the
    stderr/exit files come back, paths are rewritten, and the result equals the local backend's.
    The driver's copy of the event file rotates by the local worker's rule (here every 600 bytes)
    and reads back the same events as the local job's unrotated file."""
    from engine.backends.local import LocalBackend
    from engine.eventlog import ENV_ROTATE, segments

    monkeypatch.setenv(ENV_ROTATE, "600")  # the driver's rotation size
    params = {"horizon": [1, 16], "methods": ["persistence", "drift"]}
    ws_local, ws_ray = tmp_path / "local", tmp_path / "ray"
    spec_l, dir_l = _new_job(ws_local, params, symbols=("SPY", "AAPL"))
    local = LocalBackend()
    hl = local.submit(spec_l, dir_l, {**os.environ, "FORECAST_HEARTBEAT_S": "1", ENV_ROTATE: "0"})

    backend = RayBackend(ws_ray, namespace=NS, shared=False)
    spec_r, dir_r = _new_job(ws_ray, params, symbols=("SPY", "AAPL"))
    backend.submit(spec_r, dir_r, {"FORECAST_HEARTBEAT_S": "1"})
    # a second console (new backend object, same cluster) re-attaches by the actor's name
    again = RayBackend(namespace=NS, shared=False)  # as the console builds it: no workspace needed
    h2 = again.attach(spec_r.id, dir_r)
    assert h2 is not None and h2.attached
    assert RayBackend(ws_ray, namespace=NS).attach("no-such-job", dir_l) is None  # no ray.json there
    st_r = _wait(again, [h2], timeout=30)[spec_r.id]
    assert st_r.ok, (st_r, (dir_r / "stderr.log").read_text() if (dir_r / "stderr.log").exists() else "")
    deadline = time.time() + 30
    while (st_l := local.poll(hl)) is None:
        assert time.time() < deadline
        time.sleep(0.1)
    assert st_l.ok

    ev_r, ev_l = _events(dir_r), _events(dir_l)
    assert [e["type"] for e in ev_r][0] == "started" and ev_r[-1]["type"] == "result"
    assert sum(e["type"] == "progress" for e in ev_r) == sum(e["type"] == "progress" for e in ev_l) > 0
    assert len(segments(dir_r / "events.jsonl")) >= 2 and not segments(dir_l / "events.jsonl")
    kept = [e["type"] for e in ev_l if e["type"] != "heartbeat"]
    assert [e["type"] for e in ev_r if e["type"] != "heartbeat"] == kept  # rotation dropped heartbeats only
    assert json.loads((dir_r / "exit.json").read_text())["code"] == 0  # shipped back
    assert (dir_r / "stderr.log").exists()
    assert ev_l[-1]["type"] == "result"  # the final event is each copy's last line (engine.worker)
    res_r, res_l = ev_r[-1], ev_l[-1]
    assert res_r["baselines"] == res_l["baselines"] and len(res_r["baselines"]) > 0
    for res in (res_r, res_l):
        res["summary"].pop("seconds")
    assert res_r["summary"] == res_l["summary"]
    assert not any("forecast-ray-" in json.dumps(e) for e in ev_r)  # node paths rewritten


@pytest.mark.ray
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (./setup.sh --ray)")
def test_shipped_artifacts_land_in_the_workspace_before_the_result(cluster: Any, tmp_path: Path) -> None:
    """A regression job writes reports/<name>.md on the node; the driver unpacks it and the
    artifact event and result point at the driver's copy (which exists when the result arrives)."""
    backend = RayBackend(tmp_path, namespace=NS, shared=False)
    spec, job_dir = _new_job(tmp_path, {"horizon": 16, "models": ["toto"]}, kind="regression")
    h = backend.submit(spec, job_dir, {"FORECAST_HEARTBEAT_S": "1"})
    seen_result_without_file: list[str] = []

    def check() -> None:
        for e in _events(job_dir):
            if e["type"] == "result" and not Path(e["summary"]["report"]).exists():
                seen_result_without_file.append(e["summary"]["report"])

    st = _wait(backend, [h], timeout=40, on_tick=check)[spec.id]
    assert st.ok, (job_dir / "stderr.log").read_text()
    ev = _events(job_dir)
    art = [e for e in ev if e["type"] == "artifact"]
    assert len(art) == 1 and Path(art[0]["path"]).parent == tmp_path / "reports"
    assert Path(art[0]["path"]).read_text().startswith("# Regression check")
    assert ev[-1]["type"] == "result" and Path(ev[-1]["summary"]["report"]).is_file()
    assert not seen_result_without_file
    assert not (tmp_path / "jobs" / spec.id / "ray-tmp").exists()


# ---- a small sweep end to end on the cluster --------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_RAY, reason="ray is not installed (./setup.sh --ray)")
async def test_sweep_end_to_end_through_ray(cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two sweep coordinators and their tiny-Toto trials run as Ray actors: each trial asks for
    0.4 of a (logical) GPU and both pack onto the cluster at once; loss events stream to the
    engine; the finished trial's run lands in the tracker; cancelling the other sweep cancels its
    running trial.

    One sweep's trial is short (SYN: it must succeed), the other's trains until cancelled (SYM), so
    the two overlap as soon as the long one is running while the short one is (the long one cannot
    end first), and the cancel reuses the long one's actors instead of starting a third sweep."""
    from engine.controller import Engine
    from store import Store
    from tests.helpers import write_cycle_csv as write_csv
    from tests.test_sweep_e2e import TINY

    t0 = time.monotonic()
    data = tmp_path / "data"
    for sym in ("SYN", "SYM"):
        write_csv(data / f"{sym}.csv")
    monkeypatch.setenv("FORECAST_DATA", str(data))
    monkeypatch.setenv("FORECAST_HYPERPARAMS", str(tmp_path / "hyperparams"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ws = tmp_path / "ws"
    store = Store.open(ws)
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "FORECAST_RAY_LOGICAL_GPUS": "1"}
    engine = Engine(ws, store=store, backend=RayBackend(ws, namespace=NS), cpu_slots=1, env=env, poll_interval=0.1,
                    heartbeat_s=1.0, gpu_source=_NoGpu())
    await engine.start()
    q = engine.subscribe()
    ray_mod = cluster

    def trials(sweep_id: str) -> list[Any]:
        return [j for j in engine.jobs() if j.kind == "train" and j.parent == sweep_id]

    async def until(cond: Any, timeout: float, what: str, tick: Any = None) -> None:
        await wait_for(cond, timeout, what, tick=tick, detail=job_states(engine))

    try:
        long = {**TINY, "epochs": 400, "max_steps_per_epoch": 4, "patience": 1000}  # never ends by itself here
        short = JobSpec.create("sweep", ["SYN"], "toto", params={**TINY, "mode": "quick", "max_runs": 1,
                                                                  "vram_gb": 30})
        endless = JobSpec.create("sweep", ["SYM"], "toto", params={**long, "mode": "quick", "max_runs": 1,
                                                                    "vram_gb": 30})
        sweeps = [short, endless]
        for s in sweeps:
            engine.submit(s)
        both_running: list[float] = []

        def sample() -> None:
            running = [j for s in sweeps for j in trials(s.id) if j.state == "running"]
            if len(running) == 2:
                both_running.append(ray_mod.available_resources().get("GPU", 0.0))

        await until(lambda: engine.job(short.id).finished, 80, "the short sweep", sample)  # type: ignore[union-attr]
        st = engine.job(short.id)
        assert st is not None and st.state == "succeeded", (st, (ws / "jobs" / short.id / "stderr.log").read_text())
        (trial,) = trials(short.id)
        assert trial.state == "succeeded", (ws / "jobs" / trial.id / "stderr.log").read_text()
        assert engine.curve(trial.id)  # per-epoch loss streamed from the actor's event file
        (run,) = [r for r in store.runs(model="toto", symbol="SYN") if r["job_id"] == trial.id]
        spec = engine.spec(trial.id)
        assert spec is not None and run["hyperparams"]["lr"] == spec.params["lr"]
        assert store.get_job(trial.id)["backend"] == "ray"  # type: ignore[index]
        # the endless sweep's trial trains (its loss events stream too) while nothing else runs
        await until(lambda: any(engine.curve(j.id) for j in trials(endless.id)), 60, "the endless trial training")
        (other,) = trials(endless.id)
        assert other.state == "running"
        for s, t in ((short, trial), (endless, other)):
            ray_info = json.loads((ws / "jobs" / t.id / "ray.json").read_text())
            assert (ray_info["num_gpus"], ray_info["num_cpus"]) == (0.4, 1.0)  # 30 GB of an 80 GB GPU
            assert json.loads((ws / "jobs" / s.id / "ray.json").read_text())["num_gpus"] == 0.0
        # the two 0.4-GPU trials ran side by side on the two logical GPUs
        assert both_running, "the two trials never ran at the same time"
        assert any(abs(free - (2.0 - 0.8)) < 1e-6 for free in both_running), both_running
        kinds = {u.kind for u in _drain(q)}
        assert {"loss", "progress", "state"} <= kinds

        # cancelling a sweep cancels its running trial (the coordinator spools the cancel)
        engine.cancel(endless.id)
        await until(lambda: engine.job(endless.id).finished and engine.job(other.id).finished, 20,  # type: ignore[union-attr]
                    "cancel")
        assert engine.job(endless.id).state == "cancelled" and engine.job(other.id).state == "cancelled"  # type: ignore[union-attr]
        await until(lambda: ray_mod.available_resources().get("GPU", 0.0) == pytest.approx(2.0), 10,
                    "GPU shares released")
        print(f"\nray sweep e2e: {time.monotonic() - t0:.1f} s")
    finally:
        await engine.stop(cancel_running=True)
        store.close()


def _drain(q: Any) -> list[Any]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out
