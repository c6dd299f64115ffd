"""fednb: federated data science from Jupyter; the data never leaves its owners' servers.

``import fednb`` is cheap: pandas, the HTTP client and (never) torch load on first use.
"""

from __future__ import annotations

from typing import Any

from fednb._version import __version__
from fednb.errors import (
    DomainError,
    DomainUnavailable,
    FednbError,
    MissingExtra,
    ModelError,
    NotConverged,
    NotEnoughDomains,
    PerfectSeparation,
    RequestBlocked,
    RequestDenied,
    RequestFailed,
    SingularDesign,
)

_LAZY = {
    "connect": ("fednb.client.federation", "connect"),
    "Federation": ("fednb.client.federation", "Federation"),
    "function": ("fednb.client.functions", "function"),
    "dry_run": ("fednb.client.dry_run", "dry_run"),
    "save_profile": ("fednb.client.profile", "save"),
    "set_language": ("fednb.i18n", "set_language"),
    "glm": ("fednb.federated.glm", "glm"),
    "coxph": ("fednb.federated.cox", "coxph"),
    "table": ("fednb.results", "table"),
    "stat": ("fednb.results", "stat"),
}

__all__ = ["__version__", "DomainError", "DomainUnavailable", "FednbError", "NotEnoughDomains",
           "RequestBlocked", "RequestDenied", "RequestFailed", *_LAZY,
           "ModelError", "SingularDesign", "PerfectSeparation", "NotConverged", "MissingExtra"]


def __getattr__(name: str) -> Any:
    if name == "widgets":  # fednb.widgets.TrainingDashboard() after a plain `import fednb`
        import importlib

        return importlib.import_module("fednb.widgets")
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fednb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext fednb``: the ``%%fednb submit`` cell magic."""
    from fednb.jupyter.magic import load_ipython_extension as load

    load(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension lives (``jupyter labextension develop``)."""
    return [{"src": "labextension", "dest": "fednb-jupyterlab"}]
