"""Promotion: write a decision to `hyperparams/<model>/<SYMBOL>.json` for trading code.

Why it is careful: that file is the hand-off to a live system, and several workspaces may share
one hyperparams folder.

* One promotion at a time per hyperparams folder: an `fcntl` lock on `<hyperparams>/.promote.lock`.
* The audit cannot diverge from the file: an `intent` entry (with the exact bytes' sha256) is
  appended before the file is replaced, the completion after. A crash in between leaves an open
  intent, which the next writer settles from what the file holds (`settle_promotions`).
* Rollback undoes this workspace's latest live promotion only if the file still holds what that
  promotion wrote; when another workspace promoted since, it refuses and names who.
* The file is written atomically (temp, fsync, `os.replace`, fsync of the folder) with the
  replaced file's permission bits, in the versioned schema of docs/HYPERPARAMS_SCHEMA.md, with
  the adapter copied beside it (store/handoff.py), and every entry keeps the full contents written
  and replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.atomic import atomic_write_bytes, fsync_dir
from store.best_config import HYPERPARAMS_SCHEMA_VERSION
from store.handoff import adapter_files, attach_adapter, decision_body
from store.host import HostBase
from store.records import NaiveScores, Promotion, RecordError, parse
from store.storage import StoreError

if TYPE_CHECKING:  # pragma: no cover
    from store.records import ComparisonRow, Pick

LOCK_NAME = ".promote.lock"


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def encode(content: dict[str, Any]) -> bytes:
    return (json.dumps(content, indent=2, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")


def _sha(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None


@contextlib.contextmanager
def hyperparams_lock(root: Path) -> Iterator[None]:
    """Serialise promotions into one hyperparams folder (across processes and workspaces)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _split_metrics(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`val_x` → validation[x], `test_x` → test[x]; other metrics are not part of the hand-off."""
    val = {k[4:]: v for k, v in metrics.items() if k.startswith("val_")}
    test = {k[5:]: v for k, v in metrics.items() if k.startswith("test_")}
    return val, test


def _summary(content: dict[str, Any] | None) -> dict[str, Any] | None:
    """What `previous` records: the replaced file without its own `previous` (no nesting chain)."""
    if content is None:
        return None
    return {k: v for k, v in content.items() if k != "previous"}


class PromotionMixin(HostBase):
    """promote / rollback / promotions; mixed into Store (the host: store.host)."""

    def promoted_path(self, model: str, symbol: str) -> Path:
        return self.hyperparams_dir / self._check_model(model) / f"{self._check_symbol(symbol)}.json"

    def _read_bytes(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def _parse_promoted(self, path: Path, data: bytes | None) -> dict[str, Any] | None:
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StoreError(f"promoted config {path} cannot be read ({exc}); fix or move it away first") from None

    # --- what is promoted ------------------------------------------------------------------------
    def _one_pick(self, model: str, symbol: str, horizon: int | None, preset: str | None) -> Pick:
        if horizon is None:
            hs = sorted({p.horizon for p in self.picks(symbol) if p.model == model
                         and (preset is None or p.preset == preset)})
            if len(hs) > 1:
                raise StoreError(f"{model}/{symbol} has picks at horizons {', '.join(map(str, hs))}: "
                                 "say which with --horizon; nothing was promoted")
        p = self.pick(model, symbol, horizon, preset)
        if p is None:
            at = f" at h={horizon}" if horizon is not None else ""
            raise StoreError(f"no pick for {model}/{symbol}{at} yet: run validation or a sweep first, "
                             "or promote a specific run with --run RUN_ID")
        return p

    def _content_from(self, model: str, symbol: str, source: str, horizon: int | None,
                      preset: str | None) -> dict[str, Any]:
        root = self.workspace.root
        if source in ("pick", "comparison"):
            rec: Pick | ComparisonRow
            if source == "pick":
                rec = self._one_pick(model, symbol, horizon, preset)
                naive = rec.naive
            else:
                if horizon is None:
                    raise StoreError("promoting a comparison row needs its horizon; nothing was promoted")
                row = self.comparison(symbol, horizon, model, preset or "tiny")
                if row is None:
                    raise StoreError(f"no comparison row for {model}/{symbol} at h={horizon} "
                                     f"({preset or 'tiny'}); nothing was promoted")
                if not row.promotable():
                    raise StoreError(f"{row.model} is an ensemble of {row.config.get('members')}: it has no single "
                                     "config trading code could run; promote one of its members")
                ref = self.comparison(symbol, horizon, "naive", row.preset)
                naive = NaiveScores(validation=ref.validation, test=ref.test) if ref else NaiveScores()
                rec = row
            run = self.get_run(rec.source_run) if rec.source_run else None
            return decision_body(rec, naive, kind=source, run=run, workspace_root=root)
        run = self.get_run(source)
        if run is None:
            raise StoreError(f"no run with id {source!r}; nothing was promoted "
                             "(list runs with `forecast-console runs`)")
        if run["model"] != model or run["symbol"] != symbol:
            raise StoreError(f"run {source} is {run['model']}/{run['symbol']}, not {model}/{symbol}; "
                             "nothing was promoted")
        val, test = _split_metrics(run["metrics"])
        if not any(v is not None for v in val.values()):
            raise StoreError(f"run {source} has no validation metrics (val_*): a config is chosen on the "
                             "validation span, so it cannot be promoted")
        hp = dict(run["hyperparams"])
        extra = run.get("extra") or {}
        ck = run.get("checkpoint")
        ckp = (Path(ck) if Path(ck).is_absolute() else root / ck) if ck else None
        return {
            "preset": hp.get("preset"), "horizon": hp.get("horizon"), "context": hp.get("context"),
            "seed": run.get("seed") or 0, "config": hp, "validation": val, "test": test,
            "windows": {"horizon": hp.get("horizon"), "context": hp.get("context"), "spans": extra.get("spans"),
                        "validation": None, "test": None},
            "naive": None,
            "selection_metric": extra.get("selection_metric", "val_mae_pct"),
            "source": {"kind": "run", "run_id": run["run_id"], "job_id": run.get("job_id"), "pick": False},
            "provenance": {"git_commit": run.get("git_commit"), "versions": run.get("versions"),
                           "checkpoint": ck, "seed": run.get("seed")},
            "_adapter_src": ckp,
        }

    def build_promotion(self, model: str, symbol: str, source: str = "pick", *, horizon: int | None = None,
                        preset: str | None = None, by: str | None = None, now: float | None = None,
                        copy: bool = True) -> dict[str, Any]:
        """The document a promotion would write (the confirmation dialog diffs it with the live file).
        With copy=False nothing is written anywhere (the adapter is not copied yet)."""
        model = self._check_model(model)
        symbol = self._check_symbol(symbol)
        if not isinstance(source, str) or not source:
            raise StoreError("source must be 'pick', 'comparison' or a run id")
        body = self._content_from(model, symbol, source, horizon, preset)
        if copy:
            attach_adapter(body, self.hyperparams_dir / model, symbol)
        else:
            src = body.pop("_adapter_src", None)
            body["adapter"] = ({"dir": None, "files": adapter_files(Path(src)) if Path(src).is_dir() else {},
                                "source": str(src)} if src else None)
            body["base_weights"] = None
        t = time.time() if now is None else now
        return {"schema_version": HYPERPARAMS_SCHEMA_VERSION, "symbol": symbol, "model": model, **body,
                "promoted_at": _iso(t), "promoted_by": by or _who()}

    # --- the audit -------------------------------------------------------------------------------
    def _entries(self, model: str | None = None, symbol: str | None = None) -> list[Promotion]:
        out = []
        for doc_id, e in self._table("promotions").items():
            if (model is not None and e["model"] != model) or (symbol is not None and e["symbol"] != symbol):
                continue
            try:
                out.append(parse(Promotion, e, f"store table 'promotions' document {doc_id}"))
            except RecordError as exc:
                raise StoreError(str(exc)) from None
        return out

    def _log(self, entry: Promotion) -> None:
        self._insert("promotions", entry.to_doc())

    def settle_promotions(self, *, locked: bool = False) -> int:
        """Close intents a crash left open, from what each file holds. Returns how many were settled.

        `locked`: the caller already holds the hyperparams lock (flock is per open file, so taking it
        again in the same process would wait for ourselves)."""
        with self._lock:
            if self.readonly:
                return 0
            done = {e.intent_id for e in self._entries() if e.action != "intent"}
            todo = [e for e in self._entries() if e.action == "intent" and e.intent_id not in done]
            if not todo:
                return 0
            if not locked:
                with hyperparams_lock(self.hyperparams_dir):
                    return self.settle_promotions(locked=True)
            n = 0
            for e in todo:
                live = self._read_bytes(Path(e.path))
                landed = _sha(live) == e.content_sha256
                fields = e.model_dump(exclude={"action", "op", "recovered"})
                self._log(Promotion(**fields, action=e.op if landed else "abandoned", op=e.op,
                                    recovered=True))
                n += 1
            return n

    def _stack(self, model: str, symbol: str) -> list[Promotion]:
        """Live promotions for (model, symbol), oldest first: promote pushes, rollback pops."""
        stack: list[Promotion] = []
        for e in self._entries(model, symbol):
            if e.action == "promote":
                stack.append(e)
            elif e.action == "rollback" and stack:
                stack.pop()
        return stack

    def _commit(self, op: str, path: Path, content: dict[str, Any] | None, replaced: dict[str, Any] | None,
                mode: int | None, **fields: Any) -> None:
        """intent → file → completion."""
        data = encode(content) if content is not None else None
        now = time.time()
        entry = Promotion(action="intent", op=op, intent_id=f"{now:.6f}-{secrets.token_hex(4)}",
                          path=str(path), at=now, at_iso=_iso(now), content=content, replaced=replaced,
                          content_sha256=_sha(data), **fields)
        self._log(entry)
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                fsync_dir(path.parent)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data, mode=mode)
        self._log(entry.model_copy(update={"action": op}))

    def promote(self, model: str, symbol: str, source: str = "pick", by: str | None = None, *,
                horizon: int | None = None, preset: str | None = None) -> Path:
        """Promote the current pick (source="pick", at `horizon`), a comparison row
        (source="comparison", identified by horizon and preset) or a run id; returns the file written."""
        with self._lock:
            self._require_writable("promote")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            path = self.promoted_path(model, symbol)
            self.build_promotion(model, symbol, source, horizon=horizon, preset=preset, by=by, copy=False)  # refuse early
            with hyperparams_lock(self.hyperparams_dir):
                self.settle_promotions(locked=True)
                content = self.build_promotion(model, symbol, source, horizon=horizon, preset=preset, by=by)
                live = self._read_bytes(path)
                replaced = self._parse_promoted(path, live)
                content["previous"] = _summary(replaced)
                mode = stat.S_IMODE(path.stat().st_mode) if live is not None else None
                self._commit("promote", path, content, replaced, mode, model=model, symbol=symbol,
                             horizon=content.get("horizon"), source=source, run_id=content["source"]["run_id"],
                             by=content["promoted_by"])
            return path

    def rollback(self, model: str, symbol: str, by: str | None = None) -> Path | None:
        """Undo this workspace's latest live promotion: restore what it replaced (or remove the file if
        it replaced nothing, returning None). Refused, with nothing changed, when there is nothing to
        undo or the file no longer holds what that promotion wrote."""
        with self._lock:
            self._require_writable("roll back")
            model = self._check_model(model)
            symbol = self._check_symbol(symbol)
            path = self.promoted_path(model, symbol)
            if not self._entries(model, symbol):
                raise StoreError(f"nothing to roll back for {model}/{symbol}: no promotion is recorded")
            with hyperparams_lock(self.hyperparams_dir):
                self.settle_promotions(locked=True)
                stack = self._stack(model, symbol)
                if not stack:
                    raise StoreError(f"nothing to roll back for {model}/{symbol}: every promotion was already "
                                     "rolled back")
                top = stack[-1]
                live = self._read_bytes(path)
                if _sha(live) != top.content_sha256:
                    cur = self._parse_promoted(path, live) if live is not None else None
                    who = (f"it now holds a promotion by {cur.get('promoted_by')} at {cur.get('promoted_at')}"
                           if isinstance(cur, dict) else "the file was removed")
                    raise StoreError(f"cannot roll back {model}/{symbol}: {path} no longer holds what this "
                                     f"workspace promoted at {top.at_iso} ({who}, e.g. from another workspace); "
                                     "nothing changed")
                restore = top.replaced
                mode = stat.S_IMODE(path.stat().st_mode) if live is not None else None
                self._commit("rollback", path, restore, self._parse_promoted(path, live), mode, model=model,
                             symbol=symbol, horizon=(restore or {}).get("horizon"),
                             source=((restore or {}).get("source") or {}).get("run_id"), run_id=top.run_id,
                             by=by or _who(), undoes_at=top.at)
            return path if restore is not None else None

    def promotions(self, model: str | None = None, symbol: str | None = None) -> list[Promotion]:
        """The audit log of completed actions, oldest first (intents are bookkeeping, left out)."""
        with self._lock:
            m = self._check_model(model) if model is not None else None
            s = self._check_symbol(symbol) if symbol is not None else None
            return [e for e in self._entries(m, s) if e.action != "intent"]
