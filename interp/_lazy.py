"""Packages whose public names are imported on first use, so that importing one light module of a package (its
options, say) does not load torch: at the end of the package's `__init__`,
`__getattr__, __dir__ = lazy_names(globals(), SOURCES)`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any


def lazy_names(
    namespace: dict[str, Any], sources: dict[str, tuple[str, ...]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module `__getattr__` and `__dir__` of the package whose globals are `namespace`. `sources` maps a module
    to the names the package takes from it; each is imported on first use and kept.

    The package then reads as when its `__init__` imported every name: a submodule's name imports the submodule
    (`interp.locator.units` after `import interp.locator`), and a name that is both a submodule and a function
    taken from it (`interp.audit.audit`) stays the function when the submodule is imported."""
    package = namespace["__name__"]
    where = {name: module for module, names in sources.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            value = getattr(importlib.import_module(where[name]), name)
            namespace[name] = value
            return value
        if not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace.get("__all__", ())))

    class LazyPackage(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in where and isinstance(value, types.ModuleType) and value.__name__ == f"{package}.{name}":
                return  # the import system binding the submodule over the function of the same name
            super().__setattr__(name, value)

    sys.modules[package].__class__ = LazyPackage
    return __getattr__, __dir__
