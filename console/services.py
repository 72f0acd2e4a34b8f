"""The console's bridge to the engine and the store.

Why a separate module: the screens must never block the event loop and must never import torch.
Everything here that touches disk (store reads, CSV listing, promotions) runs on one background
thread (a single-worker executor, so store calls from the console are serialised). The store and
the engine client are imported when the workspace is opened, after the first frame; until then,
and when the store could not be opened, every read answers empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from console.review_data import ScreenData, StockRow, SymbolInfo, horizons_of, stock_rows
from engine import paths
from engine.curve_file import curve_path, read_curve
from engine.data import list_symbols
from engine.difficulty import UNKNOWN
from engine.state import Status
from store.workspace import Workspace

if TYPE_CHECKING:  # annotations only: the store (and its records) is opened after the first frame
    from store.records import BaselineRow, ComparisonRow, Pick, RegressionRow

T = TypeVar("T")


def _short_date(value: Any) -> str:
    return str(value)[:10] if value is not None else ""


#: How many earlier runs per symbol the Live screen overlays.
EARLIER_RUNS = 3


def _runs_of(store: Any, model: str, symbol: str) -> list[dict[str, Any]]:
    return store.runs(model=model, symbol=symbol)


class ConsoleServices:
    """One console session's view of a workspace: the engine service (a live client mirror, see
    console.job_mirror) and the store, opened read-only.

    Store reads and other file I/O go through `call()`, which runs them on one background thread;
    every change (jobs, promotions, rollbacks) is a request to the engine service.
    """

    def __init__(
        self,
        workspace: Path | str | None = None,
        *,
        data_dirs: Sequence[Path] | None = None,
        hyperparams_dir: Path | str | None = None,
        backend: str = "local",
        address: str | None = None,
        gpu_source: Any | None = None,
        use_engine: bool = True,
        engine_kwargs: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workspace = paths.workspace_dir(workspace)
        self.data_dirs = list(data_dirs) if data_dirs is not None else paths.data_dirs(self.workspace)
        self.hyperparams_dir = paths.hyperparams_dir(hyperparams_dir)
        self.backend = backend
        self.address = address
        self.gpu_source = gpu_source
        self.use_engine = use_engine
        self.engine_kwargs = dict(engine_kwargs or {})
        self.clock = clock
        self.store: Any | None = None
        self.engine: Any | None = None
        self.readonly_reason: str | None = None
        self.notices: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-store")
        self._known_symbols: set[str] = set()
        self._stock_rows: dict[str, StockRow] = {}
        self.horizons: list[int] = []  # horizons with a decision, most recent comparison's first

    # ------------------------------------------------------------------ lifecycle
    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work on the console's I/O thread and await it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _open_store_blocking(self) -> None:
        """The store, read-only: the engine service is its only writer (reads see its updates)."""
        from store import Store

        self.store = Store.open(self.workspace, readonly=True, hyperparams_dir=self.hyperparams_dir)

    async def open(self, on_starting: Callable[[str], None] | None = None) -> None:
        """Connect to the workspace's engine service (starting it), then open the store read-only.
        `on_starting` hears what a service that is starting says it is doing (a ledger upgrade), on
        the thread that waits for it (default: a line on stderr, engine.client)."""
        if self.use_engine:
            from console.job_mirror import EngineMirror
            from engine.client import EngineError

            if self.backend == "ray":
                from engine.backends import ENV_BACKEND, ENV_RAY_ADDRESS

                os.environ[ENV_BACKEND] = "ray"  # the service this console starts sends jobs to Ray
                if self.address:
                    os.environ[ENV_RAY_ADDRESS] = self.address
            mirror = EngineMirror(self.workspace, cpu_slots=self.engine_kwargs.get("cpu_slots"),
                                  poll_interval=self.engine_kwargs.get("poll_interval"),
                                  hyperparams_dir=self.hyperparams_dir, on_starting=on_starting)
            try:
                await mirror.open()
                self.engine = mirror
            except (EngineError, OSError) as exc:
                from store.storage import LOCK_ADVICE

                # this console already only reads: the lock's advice to open read-only is not for it
                why = str(exc).replace(f"; {LOCK_ADVICE}", "")
                self.readonly_reason = (f"this console is read-only: no engine service could start ({why}); "
                                        "restart it once that process has ended")
                self.notices.append(f"Could not start the engine service: {why}. Job actions are disabled; "
                                    "the console only reads the workspace.")
        self.workspace.mkdir(parents=True, exist_ok=True)
        await self.call(self._open_store_blocking)
        if self.gpu_source is None:
            from engine.gpu import detect_source

            self.gpu_source = await self.call(detect_source)

    async def close(self, cancel_running: bool = False) -> None:
        """Disconnect from the engine (cancelling running jobs first if asked); the service ends by
        itself once idle. Then release the store."""
        if self.engine is not None:
            try:
                if cancel_running:
                    for js in [j for j in self.engine.jobs() if j.state == Status.RUNNING]:
                        with contextlib.suppress(ValueError, OSError):
                            await self.call(self.engine.cancel, js.id)
                await self.engine.close()
            finally:
                self.engine = None
        if self.store is not None:
            store = self.store
            self.store = None
            await self.call(store.close)
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ stocks
    def _list_symbol_infos(self) -> list[SymbolInfo]:
        """engine.data.list_symbols (pandas-free), tagged shipped/workspace by folder."""
        shipped_dir = self.data_dirs[0].resolve() if self.data_dirs else None
        out = []
        for info in list_symbols(self.data_dirs):
            src = "shipped" if shipped_dir and info.path.parent.resolve() == shipped_dir else "workspace"
            out.append((info.symbol, info.rows, _short_date(info.start), _short_date(info.end), src))
        return out

    def _stocks_blocking(self, horizon: int | None = None) -> list[StockRow]:
        infos = self._list_symbol_infos()
        baselines: list[BaselineRow] = self._read(lambda s: s.baselines())
        picks: list[Pick] = self._read(lambda s: s.picks())
        comps: list[ComparisonRow] = self._read(lambda s: s.comparisons())
        self.horizons = horizons_of(comps, picks)
        h = horizon if horizon is not None else (self.horizons[0] if self.horizons else None)
        rows = stock_rows(infos, baselines, comps, picks, h)
        self._known_symbols = {r.symbol for r in rows}
        self._stock_rows = {r.symbol: r for r in rows}
        return rows

    async def stocks(self, horizon: int | None = None) -> list[StockRow]:
        return await self.call(self._stocks_blocking, horizon)

    @property
    def known_symbols(self) -> set[str]:
        return set(self._known_symbols)

    def stock_row(self, symbol: str) -> StockRow | None:
        return self._stock_rows.get(symbol)

    # ------------------------------------------------------------------ review data
    def _read(self, fn: Callable[[Any], Any]) -> list[Any]:
        """Read one table of the store; empty while no store is open."""
        return [] if self.store is None else list(fn(self.store) or [])

    def _regressions_blocking(self) -> list[RegressionRow]:
        """The store's regression rows (engine.tasks.regression's format, recorded by the engine)."""
        return self._read(lambda s: s.regressions())

    def _screen_data_blocking(self) -> ScreenData:
        picks = self._read(lambda s: s.picks())
        promos = self._read(lambda s: s.promotions())
        pairs = {(p.model, p.symbol) for p in picks} | {(e.model, e.symbol) for e in promos}
        return ScreenData(
            baselines=self._read(lambda s: s.baselines()),
            comparisons=self._read(lambda s: s.comparisons()),
            picks=picks,
            promotions=promos,
            regressions=self._regressions_blocking(),
            promoted={(m, s): self.promoted_config_blocking(m, s) for m, s in pairs},
        )

    async def screen_data(self) -> ScreenData:
        return await self.call(self._screen_data_blocking)

    def promoted_config_blocking(self, model: str, symbol: str) -> dict[str, Any] | None:
        """The currently promoted JSON for (model, symbol), or None when nothing is promoted."""
        path = self.hyperparams_dir / model / f"{symbol}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return {"error": f"unreadable {path}: {exc}"}

    def candidate_blocking(self, model: str, symbol: str, source: str, horizon: int | None,
                           preset: str | None) -> dict[str, Any]:
        """The document a promotion would write (nothing is written or copied)."""
        if self.store is None:
            raise RuntimeError("the store is not available")
        return self.store.build_promotion(model, symbol, source, horizon=horizon, preset=preset, copy=False)

    async def promotion_preview(self, model: str, symbol: str, source: str = "pick", horizon: int | None = None,
                                preset: str | None = None) -> tuple[dict | None, dict | None, str | None]:
        """(currently promoted, the candidate document, why there is no candidate)."""
        cur = await self.call(self.promoted_config_blocking, model, symbol)
        try:
            new = await self.call(self.candidate_blocking, model, symbol, source, horizon, preset)
        except (ValueError, RuntimeError) as exc:
            return cur, None, str(exc)
        return cur, new, None

    async def promote(self, model: str, symbol: str, source: str = "pick", horizon: int | None = None,
                      preset: str | None = None) -> Path:
        """Through the engine service (the only store writer), in order with its job results."""
        out = await self.call(self._require_engine().store_write, "promote", model, symbol, source,
                              os.environ.get("USER") or "console", horizon=horizon, preset=preset)
        return Path(out)

    async def record_follow_up(self, model: str, symbol: str, metric: str, job_id: str) -> None:
        """Record on the regression row the job carrying out its proposal (through the engine service)."""
        await self.call(self._require_engine().store_write, "set_regression_follow_up", model, symbol, metric, job_id)

    async def rollback(self, model: str, symbol: str) -> Path | None:
        out = await self.call(self._require_engine().store_write, "rollback", model, symbol)
        return None if out is None else Path(out)

    def earlier_curves_blocking(self, model: str, symbols: Iterable[str], exclude: Iterable[str] = (),
                                per_symbol: int = EARLIER_RUNS) -> dict[str, list[dict[str, Any]]]:
        """Loss curves (`curve.jsonl` points) of the newest earlier train runs of `model` on each of
        `symbols`, by run id, leaving out the runs in `exclude` (the job's own). Unreadable lines are skipped."""
        if self.store is None:
            return {}
        skip = set(exclude)
        out: dict[str, list[dict[str, Any]]] = {}
        for sym in symbols:
            found = 0
            for rec in reversed(self._read(partial(_runs_of, model=model, symbol=sym))):
                extra = rec.get("extra") or {}
                run = extra.get("run_id")
                if not isinstance(run, str) or run in skip or run in out:
                    continue
                run_dir = Path(extra.get("run_dir") or Workspace(self.workspace).runs_dir / run)
                pts = read_curve(curve_path(run_dir))
                if pts:
                    out[run] = pts
                    found += 1
                if found >= per_symbol:
                    break
        return out

    # ------------------------------------------------------------------ jobs
    def _require_engine(self) -> Any:
        if self.engine is None:
            reason = self.readonly_reason or "the engine is not running"
            raise RuntimeError(f"cannot manage jobs: {reason}")
        return self.engine

    def make_spec(
        self, kind: str, symbols: Iterable[str], model: str | None, params: dict[str, Any], priority: int
    ) -> Any:
        """Validate through JobSpec.create (raises JobSpecError with a message for the form)."""
        from engine.jobs import JobSpec

        known = self._known_symbols or None
        return JobSpec.create(kind, list(symbols), model=model, params=params, priority=priority,
                              known_symbols=known)

    def submit(self, spec: Any) -> Any:
        return self._require_engine().submit(spec)

    def cancel(self, job_id: str) -> None:
        self._require_engine().cancel(job_id)

    def retry(self, job_id: str) -> Any:
        return self._require_engine().retry(job_id)

    def set_priority(self, job_id: str, priority: int) -> None:
        self._require_engine().set_priority(job_id, priority)

    def jobs(self) -> list[Any]:
        return list(self.engine.jobs()) if self.engine is not None else []

    def job(self, job_id: str) -> Any | None:
        return self.engine.job(job_id) if self.engine is not None else None

    def curve(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.engine.curve(job_id)) if self.engine is not None else []

    def log_tail(self, job_id: str, n: int = 200) -> list[str]:
        return list(self.engine.log_tail(job_id, n)) if self.engine is not None else []

    def job_for_pid(self, pid: int) -> str | None:
        """Which of our running jobs owns a GPU process."""
        return self.engine.job_for_pid(pid) if self.engine is not None else None

    def job_pids(self, tel: Any | None) -> dict[int, str]:
        """pid -> our job id, for the processes a telemetry snapshot shows on each GPU."""
        out: dict[int, str] = {}
        for g in getattr(tel, "gpus", None) or []:
            for pid, _mem in getattr(g, "processes", None) or []:
                if pid is not None and (jid := self.job_for_pid(int(pid))):
                    out[int(pid)] = jid
        return out

    def running_count(self) -> int:
        return int(self.engine.running_count()) if self.engine is not None else 0

    def subscribe(self) -> asyncio.Queue[Any] | None:
        return self.engine.subscribe() if self.engine is not None else None

    # ------------------------------------------------------------------ planner and telemetry
    def plan(self, symbol: str, model: str, preset: str = "tiny", horizon: int | None = None) -> dict[str, Any] | None:
        """The planner's settings for one symbol (pure python, no torch) at `horizon` (None: the
        planner's own), as a train job with that horizon plans them; None if unavailable.

        `tier_known` is False when no baseline has measured the symbol's tier: the planner then plans
        it as medium, and the form says so instead of showing "medium" as if it were measured."""
        from engine.forecasters.planner import plan_training

        row = self._stock_rows.get(symbol)
        if row is None:
            return None
        known = row.tier != "?"
        try:
            plan = plan_training(row.rows, row.tier if known else UNKNOWN, model, preset=preset,
                                 **({"horizon": horizon} if horizon else {}))
        except Exception as exc:  # noqa: BLE001 - shown in the form, never fatal
            return {"error": str(exc)}
        return {**plan.to_dict(), "tier_known": known}

    def gpu_snapshot(self) -> Any:
        """Blocking (NVML / psutil): call from a thread worker only."""
        if self.gpu_source is None:
            from engine.gpu import detect_source

            self.gpu_source = detect_source()
        return self.gpu_source.snapshot()
