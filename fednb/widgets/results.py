"""Pooled results as tables and plots: a number, a histogram (bars), a crosstab (heatmap),
quantiles with their error bounds; then each domain's part, who is missing and why, and notes.

Objects with a ``plot()`` that returns a plotly figure (``GLMResult.plot()``: the coefficient plot)
show that figure with their HTML summary (:class:`PlotResultView`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from fednb.i18n import label, t
from fednb.widgets import _html as h

if TYPE_CHECKING:
    from fednb.federated.stats import Pooled

PLOT_HEIGHT = 320


def is_histogram(value: Any) -> bool:
    return hasattr(value, "columns") and list(value.columns) == ["left", "right", "count"]


def is_crosstab(pooled: Pooled) -> bool:
    return hasattr(pooled.value, "columns") and pooled.statistic.startswith("crosstab")


def bin_labels(frame: Any) -> list[str]:
    def edge(x: float) -> str:
        return "−∞" if x == -math.inf else "∞" if x == math.inf else h.number(x)

    return [f"[{edge(lo)}, {edge(hi)})" for lo, hi in zip(frame["left"], frame["right"])]


def histogram_figure(pooled: Pooled):
    import plotly.graph_objects as go

    frame = pooled.value
    counts = [None if c is None or c is _na() else int(c) for c in frame["count"].astype(object)]
    fig = go.Figure(data=[go.Bar(x=bin_labels(frame), y=counts, name=t("result.count"),
                                       marker_color="#3b75af")])
    fig.update_layout(title=pooled.statistic, height=PLOT_HEIGHT, margin=dict(l=50, r=20, t=40, b=50),
                      xaxis_title=t("result.bin"), yaxis_title=t("result.count"), template="plotly_white")
    return fig


def crosstab_axes(pooled: Pooled) -> tuple[str, str]:
    """The row and column variables, from the request that produced the table."""
    request = getattr(pooled, "request", None)
    args = next((p.state.get("args") for p in getattr(request, "parts", []) if p.state.get("args")), {})
    return str(args.get("row", "")), str(args.get("col", ""))


def crosstab_figure(pooled: Pooled):
    import plotly.graph_objects as go

    frame = pooled.value
    row, col = crosstab_axes(pooled)
    z = [[None if v is None or v is _na() else int(v) for v in row] for row in frame.astype(object).to_numpy()]
    text = [[t("result.suppressed") if v is None else f"{v:,}" for v in row] for row in z]
    fig = go.Figure(data=[go.Heatmap(z=z, x=[str(c) for c in frame.columns], y=[str(i) for i in frame.index],
                                           text=text, texttemplate="%{text}", colorscale="Blues",
                                           hoverongaps=False)])
    fig.update_layout(title=pooled.statistic, height=PLOT_HEIGHT, margin=dict(l=60, r=20, t=40, b=40),
                      xaxis_title=col, yaxis_title=row, yaxis_autorange="reversed", template="plotly_white")
    return fig


def figure_output(fig: Any) -> w.Output:
    """A static plotly figure inside a widget layout: an Output holding plotly's own mime bundle
    (rendered by jupyterlab-plotly), not a FigureWidget, which ships plotly's whole bundle per plot."""
    import json

    spec = json.loads(fig.to_json())
    spec["config"] = {"displaylogo": False, "responsive": True}
    out = w.Output()
    out.outputs = ({"output_type": "display_data", "metadata": {},
                    "data": {"application/vnd.plotly.v1+json": spec, "text/plain": repr(fig.layout.title.text or "")}},)
    return out


def _na():
    import pandas as pd

    return pd.NA


def value_html(pooled: Pooled) -> str:
    value = pooled.value
    if is_histogram(value):
        rows = [[h.esc(label), h.esc(t("result.suppressed") if c is _na() else h.number(int(c)))]
                for label, c in zip(bin_labels(value), value["count"].astype(object))]
        return h.table([t("result.bin"), t("result.count")], rows, css_class="fednb-histogram")
    bounds = getattr(value, "attrs", {}).get("error_bound") if hasattr(value, "attrs") else None
    if bounds is not None and hasattr(value, "items"):  # quantiles
        rows = [[h.esc(h.number(q)), h.esc(h.number(v)),
                 h.esc(t("result.exact") if bounds.get(q, 0) == 0 else t("result.error_bound", bound=h.number(bounds[q])))]
                for q, v in value.items()]
        return h.table(["q", t("result.value"), ""], rows, css_class="fednb-quantiles")
    if hasattr(value, "to_html"):
        shown = value.astype(object).where(value.notna(), t("result.suppressed")) if hasattr(value, "notna") else value
        if is_crosstab(pooled):
            row, col = crosstab_axes(pooled)
            shown = shown.rename_axis(index=row or None, columns=col or None)
        return shown.to_html(classes="fednb-frame", border=0)
    return f'<div class="fednb-value" style="font-size:1.6em;font-weight:600;margin:4px 0">{h.esc(h.number(value))}</div>'


def by_domain_html(pooled: Pooled) -> str:
    frame = pooled.by_domain
    if frame is None or frame.empty:
        return ""
    rows = [[h.esc(v) if c == "domain" else h.esc(h.number(v)) for c, v in row.items()]
            for row in frame.to_dict("records")]
    headers = [t("common.domain") if c == "domain" else label("by_domain", c) for c in frame.columns]
    return h.heading(t("result.by_domain"), 4) + h.table(headers, rows, css_class="fednb-by-domain")


def notes_html(pooled: Pooled) -> str:
    lines = [t("result.missing", domain=d, why=why) for d, why in pooled.missing.items()] + list(pooled.notes)
    return "".join(f"<div>{h.muted(line)}</div>" for line in lines)


class ResultView(w.VBox):
    """A :class:`~fednb.federated.stats.Pooled` statistic: its value, a plot where one helps, the parts."""

    def __init__(self, pooled: Pooled):
        self.pooled = pooled
        title = w.HTML(h.heading(t("result.title", statistic=pooled.statistic, n=len(pooled.domains))))
        children: list[w.Widget] = [title]
        self.figure = None
        if is_histogram(pooled.value):
            self.figure = histogram_figure(pooled)
        elif is_crosstab(pooled):
            self.figure = crosstab_figure(pooled)
        table = w.HTML(value_html(pooled))
        if self.figure is not None:
            self.figure.update_layout(width=520)
            children.append(w.HBox([figure_output(self.figure), table], layout=w.Layout(align_items="flex-start")))
        else:
            children.append(table)
        children.append(w.HTML(by_domain_html(pooled) + notes_html(pooled)))
        super().__init__(children)
        self.add_class("fednb-result")


class PlotResultView(w.VBox):
    """Any result with ``plot()`` returning a plotly figure, above its HTML (or text) summary."""

    def __init__(self, result: Any):
        import plotly.graph_objects as go

        self.result = result
        children: list[w.Widget] = []
        try:
            figure = result.plot()
        except Exception:  # no plot (a missing extra, nothing to draw): the summary alone
            figure = None
        if isinstance(figure, w.Widget):
            children.append(figure)
        elif isinstance(figure, go.Figure):
            children.append(figure_output(figure))
        summary = getattr(result, "_repr_html_", None)
        children.append(w.HTML(summary() if callable(summary) else f"<pre>{h.esc(repr(result))}</pre>"))
        super().__init__(children)
        self.add_class("fednb-result")
