"""Survival figures: Kaplan–Meier curves with their bands and a number-at-risk table under them
(the layout of Pocock, Clayton & Altman, *Lancet* 359, 2002, "Survival plots of time-to-event
outcomes in clinical trials"), and a forest plot of a Cox model's hazard ratios.

They read only the result objects' data (:mod:`fednb.federated.survival_result`), in the language of
:mod:`fednb.i18n`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fednb.errors import MissingExtra
from fednb.i18n import t

if TYPE_CHECKING:
    from fednb.federated.survival_result import CoxResult, SurvivalCurves

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise MissingExtra("plotting needs plotly: pip install 'fednb[widgets]'") from None
    return go, make_subplots


def _fill(color: str) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.18)"


def km_figure(curves: SurvivalCurves, *, times: int = 6):
    """Step curves from S(0) = 1 with shaded bands; under them the number at risk at ``times`` evenly
    spaced grid times, one row per group."""
    go, make_subplots = _plotly()
    groups = curves.groups
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.78, 0.22])
    start = min(0.0, curves.grid[0])
    for i, g in enumerate(groups):
        color = COLORS[i % len(COLORS)]
        part = curves.table[curves.table["group"] == g]
        x = np.concatenate([[start], part["time"].to_numpy()])
        name = _name(curves, g)

        def y(col: str, part=part) -> np.ndarray:
            return np.concatenate([[1.0], part[col].to_numpy()])
        fig.add_trace(go.Scatter(x=x, y=y("upper"), mode="lines", line={"shape": "hv", "width": 0}, showlegend=False,
                                 hoverinfo="skip", legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=y("lower"), mode="lines", line={"shape": "hv", "width": 0}, fill="tonexty",
                                 fillcolor=_fill(color), hoverinfo="skip", legendgroup=name,
                                 name=t("surv.band", level=round(100 * (1 - curves.alpha))), showlegend=False),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=y("survival"), mode="lines", line={"shape": "hv", "color": color, "width": 2},
                                 name=name, legendgroup=name), row=1, col=1)
    ticks = list(np.linspace(start, curves.grid[-1], times))
    risk = curves.at_risk(ticks)
    for i, g in enumerate(groups):
        name = _name(curves, g)
        fig.add_trace(go.Scatter(x=ticks, y=[name] * len(ticks), mode="text", showlegend=False,
                                 text=[f"{int(v)}" for v in risk[g]], textfont={"color": COLORS[i % len(COLORS)]},
                                 hoverinfo="skip"), row=2, col=1)
    fig.update_yaxes(title_text=t("surv.survival"), range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text=t("surv.at_risk"), showgrid=False, autorange="reversed", row=2, col=1)
    fig.update_xaxes(title_text=t("surv.time"), tickvals=ticks, ticktext=[f"{v:.4g}" for v in ticks], row=2, col=1)
    fig.update_xaxes(tickvals=ticks, showticklabels=False, row=1, col=1)
    fig.update_layout(title=t("surv.km_title", duration=curves.duration, event=curves.event), height=520,
                      template="plotly_white", legend={"orientation": "h", "y": 1.08})
    return fig


def _name(curves: SurvivalCurves, group) -> str:
    return t("surv.all") if group == "all" else f"{curves.by} = {group}"


def forest_figure(fit: CoxResult, alpha: float = 0.05):
    """Hazard ratios with confidence intervals on a log axis, a line at 1 (no effect)."""
    go, _ = _plotly()
    ci = fit.conf_int(alpha)
    names = list(fit.params.index)[::-1]
    hr = np.exp(fit.params[names].to_numpy())
    lo, hi = np.exp(ci.loc[names, "lower"].to_numpy()), np.exp(ci.loc[names, "upper"].to_numpy())
    fig = go.Figure(go.Scatter(
        x=hr, y=names, mode="markers", marker={"size": 10, "color": COLORS[0], "symbol": "square"},
        error_x={"type": "data", "symmetric": False, "array": hi - hr, "arrayminus": hr - lo},
        text=[f"HR {h:.3g} ({a:.3g}–{b:.3g})" for h, a, b in zip(hr, lo, hi)], hoverinfo="text+y", showlegend=False))
    fig.add_vline(x=1.0, line_dash="dash", line_color="gray")
    # annotations on a log axis take log10 of the value
    fig.add_annotation(x=0.0, y=1.0, yref="paper", text=t("surv.no_effect"), showarrow=False, xanchor="left",
                       yanchor="bottom", font={"color": "gray"})
    span = [np.log10(min(lo.min(), 1.0)) - 0.05, np.log10(max(hi.max(), 1.0)) + 0.05]
    fig.update_xaxes(type="log", range=span, title_text=t("surv.hazard_ratio", level=round(100 * (1 - alpha))))
    fig.update_layout(title=t("surv.forest_title", formula=fit.formula), template="plotly_white",
                      height=160 + 40 * len(names))
    return fig
