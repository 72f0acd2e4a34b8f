"""What `Store` gives the mixins that hold its tables (store.decisions, store.promotion).

Why a Protocol, seen only by the type checker: the mixins call the host's checks and table helpers
(`_check_model`, `_table`, `pick`, ...), and one declaration of them keeps the mixins from each
carrying its own copy of `...` stubs. A shared stub *base class* at runtime would be wrong: C3
order puts a base after every mixin that derives from it, but a stub class listed before a later
mixin would shadow that mixin's real method.
So each mixin derives from `StoreHost` only under TYPE_CHECKING (`HostBase`); at runtime its base is
`object`, and the Store's MRO is exactly its mixins. mypy checks the mixins' bodies against this one
declaration, and `Store` must provide every member (it is abstract otherwise).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from store.records import ComparisonRow, Pick
    from store.workspace import Workspace


class StoreHost(Protocol):
    workspace: Workspace
    hyperparams_dir: Path
    _lock: threading.RLock

    @property
    def readonly(self) -> bool: ...

    def _check_model(self, model: str) -> str: ...
    def _check_symbol(self, symbol: str) -> str: ...
    def _require_writable(self, what: str) -> None: ...
    def _table(self, name: str) -> dict[str, dict[str, Any]]: ...
    def _insert(self, name: str, doc: dict[str, Any]) -> int: ...
    def _upsert(self, name: str, key: Callable[[Mapping[str, Any]], Any], rows: list[dict[str, Any]]) -> None: ...
    def _has_run(self, run_id: str) -> bool: ...
    def get_run(self, run_id: str) -> dict[str, Any] | None: ...
    def pick(self, model: str, symbol: str, horizon: int | None = None, preset: str | None = None) -> Pick | None: ...
    def picks(self, symbol: str | None = None, horizon: int | None = None) -> list[Pick]: ...
    def comparison(self, symbol: str, horizon: int, model: str, preset: str = "tiny") -> ComparisonRow | None: ...


if TYPE_CHECKING:  # pragma: no cover
    HostBase = StoreHost
else:
    HostBase = object
