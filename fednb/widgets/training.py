"""A live dashboard of a federated training run: loss and accuracy per round, per domain and for
the global model, with drop-outs marked.

The trainer calls :meth:`TrainingDashboard.update` once per domain and round (and once with
``domain="global"`` for the aggregate)::

    dash = fednb.widgets.TrainingDashboard(rounds=20, domains=["hospital-a", "hospital-b"])
    display(dash)
    dash.update({"round": 3, "domain": "hospital-a", "loss": 0.41, "accuracy": 0.83, "n": 1200,
                 "status": "ok"})     # or "dropped" / "timeout" / "failed", loss and accuracy None

A record may also carry ``reason`` (why a domain is missing: shown on hover) and, for the global
model, ``eval_loss`` / ``eval_accuracy`` from a held-out evaluation (a line of their own).

Updates may come from any thread; the plots redraw in place.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from fednb.i18n import t
from fednb.widgets import _html as h

GLOBAL = "global"
STATUSES = ("ok", "dropped", "timeout", "failed")
METRICS = ("loss", "accuracy")
_DROPOUTS = "\0dropouts"  # the key of the drop-out markers among a plot's lines (no domain is named so)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


@dataclass(frozen=True)
class Record:
    round: int
    domain: str
    loss: float | None
    accuracy: float | None
    n: int | None
    status: str
    reason: str | None = None
    eval_loss: float | None = None
    eval_accuracy: float | None = None


def _metric(record: dict, key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError(t("train.bad_record", what=f"'{key}' as a number or None", got=value))
    value = float(value)
    return None if math.isnan(value) else value


def parse(record: dict) -> Record:
    """Check one record; a message names what is wrong (the trainer's bug, not the analyst's)."""
    if not isinstance(record, dict):
        raise ValueError(t("train.bad_record", what="a dict", got=record))
    rnd = record.get("round")
    if isinstance(rnd, bool) or not isinstance(rnd, int) and not (hasattr(rnd, "__index__")):
        raise ValueError(t("train.bad_record", what="'round' as an integer", got=rnd))
    domain = record.get("domain")
    if not isinstance(domain, str) or not domain:
        raise ValueError(t("train.bad_record", what="'domain' as text ('global' for the aggregate)", got=domain))
    status = record.get("status", "ok")
    if status not in STATUSES:
        raise ValueError(t("train.bad_record", what=f"'status' in {STATUSES}", got=status))
    n = record.get("n")
    if n is not None and (isinstance(n, bool) or not hasattr(n, "__index__")):
        raise ValueError(t("train.bad_record", what="'n' as an integer or None", got=n))
    reason = record.get("reason")
    return Record(int(rnd), domain, _metric(record, "loss"), _metric(record, "accuracy"),
                  None if n is None else int(n), status, None if reason is None else str(reason),
                  _metric(record, "eval_loss"), _metric(record, "eval_accuracy"))


class TrainingDashboard(w.VBox):
    """Loss and accuracy by round: one line per domain, a bold line for the global model, and an
    ✕ where a domain dropped out or timed out."""

    def __init__(self, title: str | None = None, *, rounds: int | None = None, domains: list[str] | None = None):
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.records: list[Record] = []
        self._lock = threading.Lock()
        self._domains: list[str] = []  # in order of first appearance; "global" first
        self._header = w.HTML(h.heading(title or t("train.title"), 2))
        self._status = w.HTML(h.muted(t("train.waiting")))
        self._dropouts = w.HTML()
        # one figure with a plot per metric: a FigureWidget ships plotly's whole bundle to the browser
        self.figure = go.FigureWidget(make_subplots(rows=1, cols=len(METRICS), horizontal_spacing=0.1,
                                                    subplot_titles=[t(f"train.{m}") for m in METRICS]))
        self.figure.update_layout(height=340, width=940, template="plotly_white", margin=dict(l=50, r=10, t=40, b=40),
                                  legend=dict(orientation="h", y=-0.22))
        self.figure.update_xaxes(title_text=t("train.round"), tickformat="d",
                                 range=[0.5, rounds + 0.5] if rounds else None)
        self.expected = list(domains or [])  # the domains that should answer each round
        self._traces: dict[str, dict[str, Any]] = {m: {} for m in METRICS}
        for col, metric in enumerate(METRICS, 1):
            self.figure.add_trace(go.Scatter(x=[], y=[], mode="markers", name=t("train.dropped"),
                                             legendgroup=_DROPOUTS, showlegend=col == 1, hoverinfo="text",
                                             marker=dict(symbol="x", size=11, color="#d62728", line=dict(width=1))),
                                  row=1, col=col)
            self._traces[metric][_DROPOUTS] = self.figure.data[-1]
        super().__init__([self._header, self._status, self.figure, self._dropouts])
        self.add_class("fednb-training")
        for domain in [GLOBAL, *self.expected]:  # stable colours and legend order from the start
            self._domains.append(domain)
            for metric in METRICS:
                self._trace(metric, domain)

    # -- feeding -----------------------------------------------------------------------------------
    def update(self, record: dict) -> TrainingDashboard:
        """Add one record (see the module's docstring) and redraw."""
        return self.extend([record])

    def extend(self, records: list[dict]) -> TrainingDashboard:
        parsed = [parse(r) for r in records]
        with self._lock:
            for r in parsed:
                self.records.append(r)
                if r.domain not in self._domains:
                    self._domains.append(r.domain)
                evaluated = (GLOBAL, "eval")
                if r.domain == GLOBAL and (r.eval_loss is not None or r.eval_accuracy is not None) \
                        and evaluated not in self._domains:
                    self._domains.append(evaluated)
            self._redraw()
        return self

    @property
    def frame(self):
        """Every record so far as a DataFrame."""
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.records],
                            columns=["round", "domain", "loss", "accuracy", "n", "status", "reason", "eval_loss",
                                     "eval_accuracy"])

    # -- drawing -----------------------------------------------------------------------------------
    def _series(self, domain: str, metric: str) -> tuple[list[int], list[float | None], list[str]]:
        """Points of one line; a drop-out leaves a gap (None) so the line breaks there. The global
        model's held-out evaluation is the line ``(GLOBAL, "eval")``."""
        field = metric
        if isinstance(domain, tuple):
            domain, field = domain[0], f"eval_{metric}"
        latest: dict[int, Record] = {}
        for r in self.records:
            if r.domain == domain:
                latest[r.round] = r
        xs = sorted(latest)
        ys = [getattr(latest[x], field) if latest[x].status == "ok" else None for x in xs]
        texts = [f"{domain} · {t('train.round')} {x}" + (f" · n={latest[x].n:,}" if latest[x].n is not None else "")
                 for x in xs]
        return xs, ys, texts

    def _dropout_points(self, metric: str) -> tuple[list[int], list[float], list[str]]:
        """Where to draw each ✕: at the domain's last value before it dropped, else at the global
        model's value in that round, else at 0."""
        xs, ys, texts = [], [], []
        ok = [o for o in self.records if o.status == "ok" and getattr(o, metric) is not None]
        for r in self.records:
            if r.status == "ok":
                continue
            own = [getattr(o, metric) for o in ok if o.domain == r.domain and o.round < r.round]
            glob = [getattr(o, metric) for o in ok if o.domain == GLOBAL and o.round <= r.round]
            xs.append(r.round)
            ys.append(own[-1] if own else glob[-1] if glob else 0.0)
            why = t("train.dropout_item", round=r.round, domain=r.domain, why=self._why(r.status))
            texts.append(f"{why}: {r.reason}" if r.reason else why)
        return xs, ys, texts

    @staticmethod
    def _why(status: str) -> str:
        return t(f"train.{status}")

    def _trace(self, metric: str, domain: str):
        """The line of ``domain`` on ``metric``'s plot, added the first time it is needed; a domain's
        lines share one legend entry (clicking it hides both)."""
        import plotly.graph_objects as go

        traces = self._traces[metric]
        if domain not in traces:
            col = METRICS.index(metric) + 1
            evaluation = isinstance(domain, tuple)
            is_global = domain == GLOBAL or evaluation
            others = [d for d in traces if d not in (GLOBAL, _DROPOUTS) and not isinstance(d, tuple)]
            colour = "#111111" if is_global else PALETTE[len(others) % len(PALETTE)]
            name = t("train.global_eval") if evaluation else t("train.global") if is_global else domain
            self.figure.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", connectgaps=False, name=name,
                                             legendgroup=str(domain), showlegend=col == 1, hoverinfo="text+y",
                                             line=dict(width=4 if domain == GLOBAL else 2, color=colour,
                                                       dash="dash" if evaluation else "solid" if is_global else "dot")),
                                  row=1, col=col)
            traces[domain] = self.figure.data[-1]
        return traces[domain]

    def plotted(self, metric: str) -> dict[str, tuple[list, list]]:
        """What ``metric``'s plot shows: {line name: (rounds, values)}, drop-outs under "dropped out"
        (names in the current language)."""
        return {trace.name: (list(trace.x), list(trace.y)) for trace in self._traces[metric].values()}

    def _redraw(self) -> None:
        lines = {(m, d): self._trace(m, d) for m in METRICS for d in self._domains}
        with self.figure.batch_update():
            for (metric, domain), trace in lines.items():
                trace.x, trace.y, trace.hovertext = self._series(domain, metric)
            for metric in METRICS:
                drop = self._traces[metric][_DROPOUTS]
                drop.x, drop.y, drop.hovertext = self._dropout_points(metric)
        self._status.value = self._status_html()
        dropouts = [r for r in self.records if r.status != "ok"]
        self._dropouts.value = h.muted(t("train.dropouts", list="; ".join(
            t("train.dropout_item", round=r.round, domain=r.domain, why=self._why(r.status)) for r in dropouts))) \
            if dropouts else ""

    def _status_html(self) -> str:
        last = max(r.round for r in self.records)
        this_round = {r.domain: r for r in self.records if r.round == last and r.domain != GLOBAL}
        ok = sum(r.status == "ok" for r in this_round.values())
        total = len(set(self.expected) | set(this_round))
        parts = [t("train.status", round=last, ok=ok, total=total)]
        glob = next((r for r in reversed(self.records) if r.domain == GLOBAL and r.status == "ok"), None)
        if glob is not None:
            parts.append(t("train.global_now", loss=h.number(glob.loss) if glob.loss is not None else "–",
                           accuracy=h.number(glob.accuracy) if glob.accuracy is not None else "–"))
        return f'<div class="fednb-training-status">{h.esc(" · ".join(parts))}</div>'
