"""fednb in the notebook: ipywidgets + plotly views of fednb objects (``pip install fednb[widgets]``).

- :class:`FederationView`: domains (up/down, isolation, version) and datasets (schema, rows, mock).
- :class:`RequestTracker`: a request's state on every domain, live.
- :class:`TrainingDashboard`: loss and accuracy per round, per domain and global, live.
- :class:`ResultView`: pooled statistics as tables and plots.

Displaying a Federation, a request or a pooled result shows its widget by itself; the classes are
here to embed them in layouts of your own. Importing this package loads ipywidgets only when one of
them is first used.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "FederationView": "fednb.widgets.federation",
    "RequestTracker": "fednb.widgets.tracker",
    "TrainingDashboard": "fednb.widgets.training",
    "ResultView": "fednb.widgets.results",
    "PlotResultView": "fednb.widgets.results",
    "show": "fednb.widgets.display",
    "in_notebook": "fednb.widgets.display",
    "register": "fednb.widgets.display",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(_LAZY[name])
        except ImportError as exc:
            raise ImportError(f"fednb.widgets.{name} needs ipywidgets and plotly: "
                              f"pip install 'fednb[widgets]' ({exc})") from exc
        return getattr(module, name)
    raise AttributeError(f"module 'fednb.widgets' has no attribute {name!r}")
