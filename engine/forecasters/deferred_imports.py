"""Import a model package without the parts of its dependencies that inference never runs.

Why: `forecast-console forecast` on a tiny model has a 5 s budget, and most of it went to modules a
model package imports at its top for code the forecast path never calls:
- `gluonts/torch/__init__.py` imports every gluonts estimator, and with them lightning and
  torchmetrics; toto needs only `gluonts.torch.distributions`. `defer_package_init` registers
  such a package so that its submodules import normally while its own `__init__` runs only on
  the first attribute access (`from pkg import Name` still works).
- gluonts' StudentT and NegativeBinomial bind `scipy.stats.t` / `nbinom` at import time (≈1 s of
  scipy.stats) for their `cdf`/`icdf`, which toto's sampling never calls. `names_deferred` stands
  in for such a module while the package imports: each listed name is bound to a `DeferredName`
  that imports the real module on its first call or attribute access, so a later `cdf` works and
  gives the same result. Any other name asked of the stand-in withdraws it and imports the real
  module; the stand-in is withdrawn when the block ends, so later imports get the real module.
  The same holds for the forecast generators gluonts' distribution outputs bind (for gluonts
  predictors): importing gluonts.model.forecast_generator runs gluonts.model and gluonts.dataset.
Both are no-ops when the module is already imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import Any


class LazyPackage(types.ModuleType):
    """A package whose submodules import normally but whose `__init__` runs on first attribute access
    (so `from pkg import Name` still works for code that wants the package's own namespace)."""

    def __getattr__(self, name: str) -> Any:
        spec = self.__spec__
        if name.startswith("__") or spec is None or spec.loader is None or self.__dict__.get("_lazy_loaded"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.__dict__["_lazy_loaded"] = True
        spec.loader.exec_module(self)
        return getattr(self, name)


def defer_package_init(name: str) -> None:
    """Register package `name` (not yet imported) as a `LazyPackage`; a no-op once it is imported."""
    if name in sys.modules:
        return
    parent, _, _ = name.rpartition(".")
    if parent:
        __import__(parent)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return
    mod = LazyPackage(name)
    mod.__spec__, mod.__file__, mod.__package__ = spec, spec.origin, name
    mod.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = mod
    if parent:
        setattr(sys.modules[parent], name.rpartition(".")[2], mod)


class DeferredName:
    """Stands for `module.name` until it is used: the first call or attribute access imports the module."""

    def __init__(self, module: str, name: str) -> None:
        self._where = (module, name)

    def resolve(self) -> Any:
        module, name = self._where
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "_where":
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __repr__(self) -> str:
        return f"<deferred {self._where[0]}.{self._where[1]}>"


@contextlib.contextmanager
def names_deferred(module: str, names: tuple[str, ...]) -> Iterator[None]:
    """While the block runs, `from <module> import <name>` binds a DeferredName for each of `names`
    instead of importing `module` (see the module doc)."""
    if module in sys.modules:
        yield
        return
    stand_in = types.ModuleType(module, f"stand-in for {module} (engine.forecasters.deferred_imports)")

    def withdraw() -> None:
        if sys.modules.get(module) is stand_in:
            del sys.modules[module]
        parent, _, child = module.rpartition(".")
        if parent in sys.modules and getattr(sys.modules[parent], child, None) is stand_in:
            delattr(sys.modules[parent], child)

    def other_name(name: str) -> Any:  # PEP 562: a name not listed comes from the real module
        if name.startswith("__"):  # a probe of module metadata (__file__, __path__...), not a use
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        withdraw()
        return getattr(importlib.import_module(module), name)

    for n in names:
        setattr(stand_in, n, DeferredName(module, n))
    vars(stand_in)["__getattr__"] = other_name
    sys.modules[module] = stand_in
    try:
        yield
    finally:
        withdraw()


__all__ = ["DeferredName", "LazyPackage", "defer_package_init", "names_deferred"]
