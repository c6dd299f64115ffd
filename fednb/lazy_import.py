"""Modules that load on first use, so a command that never touches data never pays for pandas.

``fednb domain requests DIR`` lists rows from SQLite; importing the whole domain facade at start
would load pandas, scipy and pyarrow (seconds on a busy machine) for nothing. The facade names its
heavy stages with :func:`lazy_import` instead of ``import``: the module object is created at once and
executed at its first attribute access (:class:`importlib.util.LazyLoader`, the recipe of the
Python documentation, "Implementing lazy imports"). tests/test_architecture.py counts these as
imports, so they cannot hide an import circle.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """The module ``name``, loaded when one of its attributes is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    if spec.submodule_search_locations is not None:
        # importing a submodule does not run a lazy package's __init__ (whatever it registers would
        # be missing): import packages lazily inside the functions that need them instead
        raise ValueError(f"{name} is a package; lazy_import takes modules only")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system does: the package's attribute names its submodule
        setattr(importlib.import_module(parent), child, module)
    return module
