"""The decision tables: baselines, picks, comparisons, regressions (TinyDB, typed records).

Why its own module: these are the small, human-readable tables that stay in TinyDB however jobs and
runs are stored, and every row crosses a boundary (a task's payload in, a screen or report out), so
each is a `store.records` model, validated when written and again when read. A hand-edited row with
a wrong type is a `RecordError` naming it (kind, model/symbol, horizon, field), never a traceback
in whichever screen reads it first.

Picks are keyed by the decision identity (model, symbol, horizon, preset): a toto pick made at
h=16 and one made at h=64 coexist and are never ranked against each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from store.host import HostBase
from store.records import (
    BaselineRow,
    ComparisonRow,
    Pick,
    Record,
    RecordError,
    RegressionRow,
    parse,
    parse_all,
)
from store.storage import StoreError

R = TypeVar("R", bound=Record)


def _stamp(doc: dict[str, Any], field: str = "updated") -> dict[str, Any]:
    now = time.time()
    doc[f"{field}_at"] = now
    doc[f"{field}_iso"] = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    return doc


def _pick_key(d: Mapping[str, Any]) -> tuple[Any, ...]:
    return (d["model"], d["symbol"], d["horizon"], d.get("preset", "tiny"))


def _comparison_key(d: Mapping[str, Any]) -> tuple[Any, ...]:
    return (d["symbol"], d["horizon"], d["model"], d.get("preset", "tiny"))


def _baseline_key(d: Mapping[str, Any]) -> tuple[Any, ...]:
    return (d["symbol"], d["model"], d["horizon"], d["span"])


def _regression_key(d: Mapping[str, Any]) -> tuple[Any, ...]:
    return (d["model"], d["symbol"], d["metric"])


class DecisionsMixin(HostBase):
    """baselines / picks / comparisons / regressions; mixed into Store (the host: store.host)."""

    # --- shared ------------------------------------------------------------------------------
    def _parse_in(self, cls: type[R], rows: Iterable[Any], what: str) -> list[R]:
        try:
            return parse_all(cls, [r.to_doc() if isinstance(r, Record) else r for r in _as_list(rows, what)], what)
        except RecordError as exc:
            raise StoreError(str(exc)) from None

    def _read(self, cls: type[R], table: str, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[R]:
        """Every stored row of `table` as a record (StoreError naming a row that does not validate)."""
        out = []
        for doc_id, d in self._table(table).items():
            if keep is not None and not keep(d):
                continue
            try:
                out.append(parse(cls, d, f"store table {table!r} document {doc_id}"))
            except RecordError as exc:
                raise StoreError(f"{exc}; fix or remove that document (store.json) and reopen") from None
        return out

    def _put(self, table: str, key: Callable[[Mapping[str, Any]], Any], recs: list[Record],
             job_id: str | None) -> None:
        docs = []
        for r in recs:
            d = r.to_doc()
            if job_id is not None:
                d["job_id"] = job_id
            docs.append(_stamp(d))
        if docs:
            self._upsert(table, key, docs)

    # --- baselines -----------------------------------------------------------------------------
    def put_baselines(self, rows: Iterable[Mapping[str, Any] | BaselineRow], *, job_id: str | None = None) -> None:
        """Upsert baseline rows keyed by (symbol, model, horizon, span)."""
        with self._lock:
            self._require_writable("record baselines")
            self._put("baselines", _baseline_key, list(self._parse_in(BaselineRow, rows, "baselines")), job_id)

    def baselines(self, symbol: str | None = None, horizon: int | None = None) -> list[BaselineRow]:
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            return self._read(BaselineRow, "baselines", lambda d: (sym is None or d["symbol"] == sym)
                              and (horizon is None or d["horizon"] == horizon))

    # --- comparisons ---------------------------------------------------------------------------
    def put_comparisons(self, rows: Iterable[Mapping[str, Any] | ComparisonRow], *, job_id: str | None = None) -> None:
        """Upsert comparison rows keyed by (symbol, horizon, model, preset)."""
        with self._lock:
            self._require_writable("record comparisons")
            self._put("comparisons", _comparison_key, list(self._parse_in(ComparisonRow, rows, "comparisons")), job_id)

    def comparisons(self, symbol: str | None = None, horizon: int | None = None) -> list[ComparisonRow]:
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            return self._read(ComparisonRow, "comparisons", lambda d: (sym is None or d["symbol"] == sym)
                              and (horizon is None or d["horizon"] == horizon))

    def comparison(self, symbol: str, horizon: int, model: str, preset: str = "tiny") -> ComparisonRow | None:
        """One comparison row by its decision identity."""
        for r in self.comparisons(symbol, horizon):
            if r.model == model and r.preset == preset:
                return r
        return None

    # --- regressions ---------------------------------------------------------------------------
    def put_regressions(self, rows: Iterable[Mapping[str, Any] | RegressionRow], *, job_id: str | None = None) -> None:
        """Upsert regression-check rows keyed by (model, symbol, metric).

        Why keyed without the job: the Regressions screen shows the latest verdict per pick; an
        older check of the same (model, symbol, metric) is replaced, not accumulated.
        """
        with self._lock:
            self._require_writable("record regressions")
            self._put("regressions", _regression_key, list(self._parse_in(RegressionRow, rows, "regressions")), job_id)

    def regressions(self, model: str | None = None, symbol: str | None = None) -> list[RegressionRow]:
        """Latest regression rows (one per model, symbol, metric), optionally filtered."""
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            return self._read(RegressionRow, "regressions", lambda d: (sym is None or d["symbol"] == sym)
                              and (model is None or d["model"] == model))

    def set_regression_follow_up(self, model: str, symbol: str, metric: str, follow_up: str) -> None:
        """Record the job/pipeline carrying out a row's proposed retrain chain (so `t` twice queues once)."""
        with self._lock:
            self._require_writable("record a regression follow-up")
            for r in self.regressions(model, symbol):
                if r.metric == metric:
                    r.follow_up = follow_up
                    self._upsert("regressions", _regression_key, [_stamp(r.to_doc())])
                    return
            raise StoreError(f"no regression row for {model}/{symbol} {metric}")

    # --- picks (table "best") ------------------------------------------------------------------
    def set_pick(self, model: str, symbol: str, pick: Mapping[str, Any] | Pick, *, job_id: str | None = None) -> Pick:
        """Make `pick` the current choice for its decision (model, symbol, horizon, preset); the one it
        replaces becomes `previous` (kept so a regression check can compare old and new)."""
        with self._lock:
            self._require_writable("set a pick")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            raw = pick.to_doc() if isinstance(pick, Pick) else pick
            if not isinstance(raw, Mapping):
                raise StoreError("a pick must be a dict with at least 'config' and 'horizon'")
            (p,) = self._parse_in(Pick, [{**raw, "model": model, "symbol": symbol}], "pick")
            if p.source_run is not None and not self._has_run(p.source_run):
                raise StoreError(f"pick {p.label()} names source run {p.source_run!r}, which does not exist")
            cur = p.to_doc()
            if job_id is not None:
                cur["job_id"] = job_id
            _stamp(cur, "set")
            key = p.key()
            old = next((d for d in self._table("best").values() if _pick_key(d) == (model, symbol, p.horizon, p.preset)),
                       None)
            new = {"model": model, "symbol": symbol, "horizon": key[1], "preset": key[3], "current": cur,
                   "previous": old["current"] if old else None}
            self._upsert("best", _pick_key, [new])
            return parse(Pick, cur)

    def _pick_docs(self, model: str, symbol: str, horizon: int | None, preset: str | None) -> list[dict[str, Any]]:
        m, s = self._check_model(model), self._check_symbol(symbol)
        docs = [d for d in self._table("best").values() if d["model"] == m and d["symbol"] == s
                and (horizon is None or d["horizon"] == horizon) and (preset is None or d.get("preset") == preset)]
        return sorted(docs, key=lambda d: d["current"].get("set_at") or 0.0)

    def _pick_from(self, doc: dict[str, Any] | None, which: str) -> Pick | None:
        if not doc or not doc.get(which):
            return None
        try:
            return parse(Pick, doc[which], f"store table 'best' ({which})")
        except RecordError as exc:
            raise StoreError(f"{exc}; fix or remove that document (store.json) and reopen") from None

    def pick(self, model: str, symbol: str, horizon: int | None = None, preset: str | None = None) -> Pick | None:
        """The current pick for the decision; without a horizon (or preset), the most recently set one."""
        with self._lock:
            docs = self._pick_docs(model, symbol, horizon, preset)
            return self._pick_from(docs[-1] if docs else None, "current")

    def previous_pick(self, model: str, symbol: str, horizon: int | None = None,
                      preset: str | None = None) -> Pick | None:
        """The pick the current one replaced (same decision identity)."""
        with self._lock:
            docs = self._pick_docs(model, symbol, horizon, preset)
            return self._pick_from(docs[-1] if docs else None, "previous")

    def picks(self, symbol: str | None = None, horizon: int | None = None) -> list[Pick]:
        """Current picks, sorted by (model, symbol, horizon, preset)."""
        with self._lock:
            sym = self._check_symbol(symbol) if symbol is not None else None
            out = [p for d in self._table("best").values()
                   if (sym is None or d["symbol"] == sym) and (horizon is None or d["horizon"] == horizon)
                   and (p := self._pick_from(d, "current")) is not None]
            return sorted(out, key=lambda p: (p.model, p.symbol, p.horizon, p.preset))


def _as_list(rows: Any, what: str) -> list[Any]:
    if isinstance(rows, Mapping | str | bytes) or not isinstance(rows, Iterable):
        raise StoreError(f"{what} must be a list of records")
    return list(rows)
