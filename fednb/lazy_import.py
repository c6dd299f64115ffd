"""Modules that load on first use, so a command that never touches data never pays for pandas.

``fednb domain requests DIR`` lists rows from SQLite; importing the whole domain facade at start
would load pandas, scipy and pyarrow (seconds on a busy machine) for nothing. The facade names its
heavy stages with :func:`lazy_import` instead of ``import``: a stand-in that imports the module at
its first attribute access and forwards every access to it.

Not :class:`importlib.util.LazyLoader`: before Python 3.12.3 it is not thread-safe (CPython
gh-114763: a second thread can see the module half executed), and a domain server's first requests
arrive on several threads at once. :func:`importlib.import_module` takes the import system's
per-module lock, so the first use from many threads loads the module once, completely.
tests/test_architecture.py counts these as imports, so they cannot hide an import circle.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


class LazyModule:
    """Stands for the module ``name`` until first used; then every attribute is the module's own."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _module(self) -> Any:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._module(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:  # tests patch the module itself
        setattr(self._module(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, loaded on first use>"


def lazy_import(name: str) -> Any:
    """A stand-in for the module ``name`` that imports it when one of its attributes is first read."""
    if importlib.util.find_spec(name) is None:  # a typo fails here, at import time, not at first use
        raise ImportError(f"no module named {name!r}", name=name)
    return LazyModule(name)
