"""The console's bridge to the engine and the store.

Why a separate module: the screens must never block the event loop and must never import torch.
Everything here that touches disk (store reads, CSV listing, promotions) runs on one background
thread (a single-worker executor, so store calls from the console are serialised), and every
import of another part happens lazily and tolerates that part not existing yet, so the console
opens — with empty tables and a plain message — on a workspace or a checkout that is incomplete.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engine import paths
from engine.data import list_symbols
from engine.difficulty import DEFAULT_TIER_HORIZON, UNKNOWN, tier

T = TypeVar("T")

def tier_for(mae_pct: float | None) -> str:
    """Difficulty tier of a symbol from its naive MAE% (engine.difficulty owns the thresholds)."""
    out = tier(mae_pct)
    return "?" if out == UNKNOWN else out


@dataclass
class StockRow:
    """One line of the Stocks screen; raw numbers kept so sorting is numeric."""

    symbol: str
    rows: int
    start: str
    end: str
    source: str = "shipped"  # "shipped" or "workspace"
    baseline_mae_pct: float | None = None
    tier: str = "?"
    best_model: str | None = None
    best_score: float | None = None


@dataclass
class ScreenData:
    """A snapshot of everything the review screens show, read in one go off the loop."""

    baselines: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    picks: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    regressions: list[dict[str, Any]] = field(default_factory=list)


def _short_date(value: Any) -> str:
    return str(value)[:10] if value is not None else ""


def _pick_score(pick: dict[str, Any]) -> float | None:
    """The number a pick was chosen on (validation[selection_metric]), if present."""
    metric = pick.get("selection_metric") or "mae_pct"
    for where in (pick.get("validation") or {}, pick.get("metrics") or {}, pick):
        for key in (metric, "val_mae_pct", "mae_pct"):
            v = where.get(key) if isinstance(where, dict) else None
            if isinstance(v, int | float):
                return float(v)
    return None


class ConsoleServices:
    """Owns the store and the engine for one console session.

    The engine runs in the app's asyncio loop (it tails event files asynchronously); store reads and
    other file I/O go through `call()`, which runs them on one background thread.
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

    # ------------------------------------------------------------------ lifecycle
    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work on the console's I/O thread and await it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _open_store_blocking(self) -> None:
        from store import Store, StoreLocked

        try:
            self.store = Store.open(self.workspace, hyperparams_dir=self.hyperparams_dir)
        except StoreLocked as exc:
            self.store = Store.open(self.workspace, readonly=True, hyperparams_dir=self.hyperparams_dir)
            self.readonly_reason = f"read-only: {exc}"
            self.notices.append(
                "Workspace is locked by another console: opened read-only, job actions disabled."
            )

    async def open(self) -> None:
        """Open the store (read-only when locked), then build and start the engine in this loop."""
        await self.call(self._open_store_blocking)
        if not self.use_engine or self.store is None or self.readonly_reason:
            return
        from engine.backends import get_backend
        from engine.controller import Engine
        from engine.gpu import detect_source

        kwargs = dict(self.engine_kwargs)
        if self.gpu_source is None:
            self.gpu_source = await self.call(detect_source)
        kwargs.setdefault("gpu_source", self.gpu_source)
        if self.backend == "ray" and "backend" not in kwargs:
            kwargs["backend"] = get_backend("ray", workspace=self.workspace, address=self.address)
        self.engine = Engine(self.workspace, store=self.store, **kwargs)
        await self.engine.start()

    async def close(self, cancel_running: bool = False) -> None:
        """Stop the engine (leaving detached jobs running unless asked) and release the store."""
        if self.engine is not None:
            try:
                await self.engine.stop(cancel_running=cancel_running)
            finally:
                self.engine = None
        if self.store is not None:
            store = self.store
            self.store = None
            await self.call(store.close)
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------ stocks
    def _list_symbol_infos(self) -> list[tuple[str, int, str, str, str]]:
        """engine.data.list_symbols (pandas-free), tagged shipped/workspace by folder."""
        shipped_dir = self.data_dirs[0].resolve() if self.data_dirs else None
        out = []
        for info in list_symbols(self.data_dirs):
            src = "shipped" if shipped_dir and info.path.parent.resolve() == shipped_dir else "workspace"
            out.append((info.symbol, info.rows, _short_date(info.start), _short_date(info.end), src))
        return out

    def _stocks_blocking(self) -> list[StockRow]:
        infos = self._list_symbol_infos()
        baselines = self._safe(lambda s: s.baselines()) if self.store else []
        picks = self._safe(lambda s: s.picks()) if self.store else []
        naive: dict[str, float] = {}
        tiers: dict[str, str] = {}
        for b in baselines:
            sym = b.get("symbol")
            if not sym:
                continue
            if isinstance(b.get("tier_mae_pct"), int | float):  # baseline task: naive MAE% at the tier horizon
                naive[sym] = float(b["tier_mae_pct"])
                if b.get("tier"):
                    tiers[sym] = str(b["tier"])
                continue
            if sym in naive or str(b.get("model", "")) not in ("naive", "persistence", "naive_persistence"):
                continue
            if int(b.get("horizon", 0) or 0) == DEFAULT_TIER_HORIZON:
                v = metric_of(b, "mae_pct")
                if v is not None:
                    naive[sym] = v
        best: dict[str, tuple[str, float | None]] = {}
        for p in picks:
            sym = p.get("symbol")
            score = _pick_score(p)
            prev = best.get(sym)
            if prev is None or (score is not None and (prev[1] is None or score < prev[1])):
                best[sym] = (str(p.get("model")), score)
        rows = []
        for sym, n, start, end, src in sorted(infos):
            mae = naive.get(sym)
            bm, bs = best.get(sym, (None, None))
            tier = tiers.get(sym) or tier_for(mae)
            rows.append(StockRow(sym, n, start, end, src, mae, "?" if tier == "unknown" else tier, bm, bs))
        self._known_symbols = {r.symbol for r in rows}
        self._stock_rows = {r.symbol: r for r in rows}
        return rows

    async def stocks(self) -> list[StockRow]:
        return await self.call(self._stocks_blocking)

    @property
    def known_symbols(self) -> set[str]:
        return set(self._known_symbols)

    def stock_row(self, symbol: str) -> StockRow | None:
        return self._stock_rows.get(symbol)

    # ------------------------------------------------------------------ review data
    def _safe(self, fn: Callable[[Any], Any]) -> list[dict[str, Any]]:
        """Read one table; an API the store does not have yet reads as empty."""
        if self.store is None:
            return []
        try:
            return list(fn(self.store) or [])
        except AttributeError:
            return []

    def _regressions_blocking(self) -> list[dict[str, Any]]:
        """The store's regression rows (engine.tasks.regression's format, recorded by the engine)."""
        return self._safe(lambda s: s.regressions())

    def _screen_data_blocking(self) -> ScreenData:
        return ScreenData(
            baselines=self._safe(lambda s: s.baselines()),
            comparisons=self._safe(lambda s: s.comparisons()),
            picks=self._safe(lambda s: s.picks()),
            promotions=self._safe(lambda s: s.promotions()),
            regressions=self._regressions_blocking(),
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

    def pick_blocking(self, model: str, symbol: str) -> dict[str, Any] | None:
        if self.store is None:
            return None
        return self.store.pick(model, symbol)

    async def promotion_preview(self, model: str, symbol: str) -> tuple[dict | None, dict | None]:
        """(currently promoted, the pick that would be promoted)."""
        cur = await self.call(self.promoted_config_blocking, model, symbol)
        new = await self.call(self.pick_blocking, model, symbol)
        return cur, new

    def _require_writable(self) -> Any:
        if self.store is None:
            raise RuntimeError("the store is not available")
        if self.readonly_reason or getattr(self.store, "readonly", False):
            raise RuntimeError("workspace opened read-only (another console owns it): cannot change it")
        return self.store

    async def promote(self, model: str, symbol: str, source: str = "pick") -> Path:
        store = self._require_writable()
        return await self.call(store.promote, model, symbol, source, os.environ.get("USER") or "console")

    async def rollback(self, model: str, symbol: str) -> Path | None:
        store = self._require_writable()
        return await self.call(store.rollback, model, symbol)

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
        """Which of our running jobs owns a GPU process (by pid or process group)."""
        if self.engine is None:
            return None
        fn = getattr(self.engine, "job_for_pid", None)
        if fn is not None:
            return fn(pid)
        return next((j.id for j in self.engine.jobs() if j.pid == pid and j.state == "running"), None)

    def running_count(self) -> int:
        return int(self.engine.running_count()) if self.engine is not None else 0

    def subscribe(self) -> asyncio.Queue[Any] | None:
        return self.engine.subscribe() if self.engine is not None else None

    # ------------------------------------------------------------------ planner and telemetry
    def plan(self, symbol: str, model: str, preset: str = "tiny") -> dict[str, Any] | None:
        """The planner's settings for one symbol (pure python, no torch), or None if unavailable."""
        from engine.forecasters.planner import plan_training

        row = self._stock_rows.get(symbol)
        if row is None:
            return None
        try:
            plan = plan_training(row.rows, row.tier if row.tier != "?" else UNKNOWN, model, preset=preset)
        except Exception as exc:  # noqa: BLE001 - shown in the form, never fatal
            return {"error": str(exc)}
        return plan.to_dict()

    def gpu_snapshot(self) -> Any:
        """Blocking (NVML / psutil): call from a thread worker only."""
        if self.gpu_source is None:
            from engine.gpu import detect_source

            self.gpu_source = detect_source()
        return self.gpu_source.snapshot()


def metric_of(row: dict[str, Any], *names: str) -> float | None:
    """A number from a store row whose metrics may be flat or nested (metrics/test/validation)."""
    for where in (row, row.get("metrics"), row.get("test"), row.get("validation")):
        if not isinstance(where, dict):
            continue
        for n in names:
            v = where.get(n)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
    return None
