"""How fednb objects show themselves in a notebook.

The client classes' ``_ipython_display_`` hooks call :func:`show`. In a Jupyter kernel with
ipywidgets it displays the object's widget; anywhere else (a terminal, no ipywidgets,
``FEDNB_WIDGETS=0``) the object's own text and HTML reprs, as before. Nothing here imports
ipywidgets or plotly until a widget is really shown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from fednb import display as protocol

# "module.Class" -> factory(obj) -> widget; the GLM engineer's GLMResult (with .plot()) and others
# register here, or fall through to :func:`_plot_widget`.
FACTORIES: dict[str, Callable[[Any], Any]] = {}


def in_kernel() -> bool:
    """True inside a Jupyter kernel, where a front end can render widgets."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def widgets_enabled() -> bool:
    if os.environ.get("FEDNB_WIDGETS", "1").lower() in ("0", "false", "no", "off"):
        return False
    if not in_kernel():
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def in_notebook() -> bool:
    """Whether widgets can show here (a Jupyter kernel with ipywidgets, not FEDNB_WIDGETS=0): the
    Trainer asks this before it shows a TrainingDashboard instead of a progress bar."""
    return widgets_enabled()


def register(qualname: str, factory: Callable[[Any], Any]) -> None:
    FACTORIES[qualname] = factory


def widget_for(obj: Any) -> Any | None:
    """The widget that shows ``obj``, or None when fednb has none for it."""
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if name in FACTORIES:
        return FACTORIES[name](obj)
    if name == "fednb.client.federation.Federation":
        from fednb.widgets.federation import FederationView

        return FederationView(obj)
    if name == "fednb.client.requests.FederatedRequest":
        from fednb.widgets.tracker import RequestTracker

        return RequestTracker(obj)
    if name == "fednb.federated.stats.Pooled":
        from fednb.widgets.results import ResultView

        return ResultView(obj)
    return _plot_widget(obj)


def _plot_widget(obj: Any) -> Any | None:
    """Results with a ``plot()`` that returns a plotly figure (e.g. ``GLMResult.plot()``: its
    coefficient plot) show that figure above their HTML summary."""
    plot = getattr(obj, "plot", None)
    if not callable(plot):
        return None
    from fednb.widgets.results import PlotResultView

    return PlotResultView(obj)


def plain_bundle(obj: Any) -> dict[str, Any]:
    """The object's own text and HTML reprs; a pooled histogram, crosstab or survival curve also
    carries its static chart in the HTML (:mod:`fednb.widgets.svg_plots`), for saved notebooks,
    HTML exports and previews, where no widget renders."""
    bundle: dict[str, Any] = {"text/plain": repr(obj)}
    html = getattr(obj, "_repr_html_", None)
    if callable(html):
        try:
            chart = static_plot(obj)
        except Exception:  # a chart is a bonus: never lose the result's own HTML over it
            chart = ""
        bundle["text/html"] = chart + html()
    return bundle


def static_plot(obj: Any) -> str:
    """The SVG chart of a pooled result where one helps, else ""."""
    from fednb.i18n import t
    from fednb.widgets import svg_plots

    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    suppressed = t("result.suppressed")
    if name == "fednb.federated.survival_result.SurvivalCurves":
        curves = {t("surv.all") if g == "all" else f"{obj.by} = {g}": (list(obj.survival(g).index),
                                                                        list(obj.survival(g).to_numpy()))
                  for g in obj.groups}
        return svg_plots.steps(curves, title=t("surv.km_title", duration=obj.duration, event=obj.event),
                               x_label=obj.duration)
    if name != "fednb.federated.stats.Pooled" or not hasattr(obj.value, "columns"):
        return ""
    frame = obj.value
    if list(frame.columns) == ["left", "right", "count"]:
        def edge(x: float) -> str:
            return "−∞" if x == -math.inf else "∞" if x == math.inf else svg_plots.number(x)

        labels = [f"[{edge(lo)}, {edge(hi)})" for lo, hi in zip(frame["left"], frame["right"])]
        counts = [None if c is None or c is _NA() else float(c) for c in frame["count"].astype(object)]
        return svg_plots.bars(labels, counts, title=obj.statistic, missing_label=suppressed)
    if obj.statistic.startswith("crosstab"):
        request = getattr(obj, "request", None)
        args = next((p.state.get("args") for p in getattr(request, "parts", []) if p.state.get("args")), {}) or {}
        cells = [[None if v is None or v is _NA() else float(v) for v in row] for row in frame.astype(object).to_numpy()]
        return svg_plots.heatmap([str(i) for i in frame.index], [str(c) for c in frame.columns], cells,
                                 row_title=str(args.get("row", "")), col_title=str(args.get("col", "")),
                                 title=obj.statistic, missing_label=suppressed)
    return ""


def _NA():
    import pandas as pd

    return pd.NA


def show(obj: Any) -> Any | None:
    """Display ``obj``: its widget where one can render, else its plain reprs; returns the widget.

    The widget's output also carries the object's own text and HTML, so a saved notebook, its HTML
    export and a notebook run by nbclient read the result, not "ResultView(children=...)"."""
    from IPython.display import display

    widget = widget_for(obj) if widgets_enabled() else None
    bundle = plain_bundle(obj)
    if widget is not None:
        bundle = {**(widget._repr_mimebundle_() or {}), **bundle}
    display(bundle, raw=True)
    return widget


def watch(obj: Any) -> bool:
    """A live dashboard for a running training (its ``on_round`` feeds it) where widgets can show."""
    if f"{type(obj).__module__}.{type(obj).__qualname__}" != "fednb.learn.trainer.Trainer" or not widgets_enabled():
        return False
    try:
        from fednb.widgets.training import TrainingDashboard
    except ImportError:
        return False
    from IPython.display import display

    board = TrainingDashboard(rounds=obj.rounds, domains=list(obj.data.domains))
    obj.on_round(board.update)
    display(board)
    return True


protocol.use(show=show, watch=watch)  # results and the Trainer reach these through fednb.display
