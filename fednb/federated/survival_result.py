"""What a federated survival analysis returns: curves, a log-rank test, a Cox fit.

Results hold data (tables, numbers, notes on what domains suppressed or coarsened); their ``plot()``
returns the plotly figure drawn by :mod:`fednb.federated.survival_plots`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class SurvivalCurves:
    """Pooled Kaplan–Meier curves. ``table``: one row per group and kept grid point with the
    number at risk, events, censorings, survival, Greenwood's standard error and the band."""

    duration: str
    event: str
    by: str | None
    grid: list[float]
    table: pd.DataFrame
    n: dict[Any, int]
    by_domain: pd.DataFrame
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    request: Any = None
    alpha: float = 0.05

    @property
    def groups(self) -> list:
        return list(dict.fromkeys(self.table["group"]))

    def survival(self, group: Any = "all") -> pd.Series:
        """Survival at each kept grid point of ``group`` (``"all"`` without ``by``)."""
        part = self.table[self.table["group"] == group]
        return pd.Series(part["survival"].to_numpy(), index=pd.Index(part["time"], name="time"), name=str(group))

    def at_risk(self, times: list[float] | None = None) -> pd.DataFrame:
        """Number at risk per group at ``times`` (default: the grid): the rows still followed just before."""
        times = self.grid if times is None else times
        out = {}
        for g in self.groups:
            part = self.table[self.table["group"] == g]
            t, r = part["time"].to_numpy(), part["at_risk"].to_numpy()
            last = float(r[-1] - part["events"].to_numpy()[-1] - part["censored"].to_numpy()[-1]) if len(r) else 0.0
            idx = np.searchsorted(t, times, side="left")
            out[g] = [float(r[i]) if i < len(r) else last for i in idx]
        return pd.DataFrame(out, index=pd.Index(times, name="time"))

    def plot(self, *, times: int = 6):
        from fednb.federated.survival_plots import km_figure

        return km_figure(self, times=times)

    def __repr__(self) -> str:
        head = f"Kaplan–Meier of {self.duration} (event {self.event})" + (f" by {self.by}" if self.by else "")
        lines = [head + f", {len(self.by_domain)} domain(s)"]
        for g in self.groups:
            s = self.survival(g)
            last = f"S({s.index[-1]:g}) = {s.iloc[-1]:.3f}" if len(s) else "no points"
            lines.append(f"  {g}: n={self.n.get(g, 0):.0f}, {len(s)} points, {last}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  missing {d}: {why}" for d, why in self.missing.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """Per group: n, the points kept and the last survival; then notes and who is missing."""
        import html

        rows = []
        for g in self.groups:
            s = self.survival(g)
            last = f"S({s.index[-1]:g}) = {s.iloc[-1]:.3f}" if len(s) else "–"
            rows.append(f"<tr><td>{html.escape(str(g))}</td><td>{self.n.get(g, 0):,.0f}</td><td>{len(s)}</td>"
                        f"<td>{last}</td></tr>")
        head = (f"<b>Kaplan–Meier of {html.escape(self.duration)}</b> (event {html.escape(self.event)})"
                + (f" by {html.escape(self.by)}" if self.by else "") + f", {len(self.by_domain)} domain(s)")
        extra = [f"note: {n}" for n in self.notes] + [f"missing {d}: {w}" for d, w in self.missing.items()]
        return (f"<div>{head}<table><tr><th>group</th><th>n</th><th>points</th><th>last</th></tr>{''.join(rows)}"
                "</table>" + "".join(f"<div><i>{html.escape(x)}</i></div>" for x in extra) + "</div>")

    def _ipython_display_(self) -> None:
        from fednb import display  # the widgets register how to plot the curves (never imported from here)

        display.show(self)


@dataclass
class LogrankResult:
    duration: str
    event: str
    by: str
    statistic: float
    df: int
    p_value: float
    table: pd.DataFrame  # group, n, observed, expected
    grid: list[float]
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    request: Any = None

    def __repr__(self) -> str:
        lines = [f"Log-rank test of {self.duration} (event {self.event}) by {self.by}: chi2 = {self.statistic:.4g}, "
                 f"df = {self.df}, p = {self.p_value:.4g} ({len(self.grid)} time points)"]
        lines += [f"  {r.group}: n={r.n}, observed {r.observed:g}, expected {r.expected:.4g}" for r in self.table.itertuples()]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass
class CoxResult:
    """A federated Cox fit: ``params``, ``bse``, ``hazard_ratios``, ``summary`` (lifelines' columns),
    the likelihood-ratio test against the model without terms, and how the fit went."""

    formula: str
    ties: str
    strata: str | None
    params: pd.Series
    cov_params: pd.DataFrame
    loglik: float
    loglik_null: float
    iterations: int
    converged: bool
    by_domain: pd.DataFrame
    missing: dict[str, str]
    rounds: int
    seconds: float
    grid: list[float] | None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, formula: str, ties: str, strata: str | None, names: list[str], fit: dict, by_domain: pd.DataFrame,
              missing: dict[str, str], rounds: int, seconds: float, grid: list[float] | None) -> CoxResult:
        cov = np.linalg.inv(-fit["hessian"])
        notes = ["concordance is not reported: Harrell's C compares every pair of patients, across domains too, "
                 "so it cannot be pooled exactly from sums"]
        if grid is not None:
            notes.insert(0, f"durations binned on {len(grid)} grid points (up to {grid[-1]:g}); events after the last "
                            "point count as censored there")
        return cls(formula, ties, strata, pd.Series(fit["beta"], index=names, name="coef"),
                   pd.DataFrame(cov, index=names, columns=names), float(fit["loglik"]), float(fit["loglik0"]),
                   fit["iterations"], fit["converged"], by_domain, dict(missing), rounds, seconds, grid, notes)

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params.to_numpy())), index=self.params.index, name="se(coef)")

    @property
    def hazard_ratios(self) -> pd.Series:
        return np.exp(self.params).rename("exp(coef)")

    @property
    def nobs(self) -> int:
        return int(self.by_domain["n"].sum())

    @property
    def events(self) -> int:
        return int(self.by_domain["events"].sum())

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        from fednb.federated.distributions import norm_ppf

        z = norm_ppf(1 - alpha / 2)
        return pd.DataFrame({"lower": self.params - z * self.bse, "upper": self.params + z * self.bse})

    @property
    def likelihood_ratio_test(self) -> dict[str, float]:
        from fednb.federated.distributions import chi2_sf

        stat = 2 * (self.loglik - self.loglik_null)
        dof = len(self.params)
        return {"statistic": stat, "df": dof, "p_value": float(chi2_sf(stat, dof))}

    @property
    def summary(self) -> pd.DataFrame:
        from fednb.federated.distributions import norm_sf

        ci = self.conf_int()
        z = self.params / self.bse
        return pd.DataFrame({"coef": self.params, "exp(coef)": self.hazard_ratios, "se(coef)": self.bse,
                             "coef lower 95%": ci["lower"], "coef upper 95%": ci["upper"],
                             "exp(coef) lower 95%": np.exp(ci["lower"]), "exp(coef) upper 95%": np.exp(ci["upper"]),
                             "z": z, "p": 2 * norm_sf(np.abs(z))})

    def plot(self):
        from fednb.federated.survival_plots import forest_figure

        return forest_figure(self)

    def __repr__(self) -> str:
        lr = self.likelihood_ratio_test
        head = (f"Federated Cox model {self.formula} (ties {self.ties}"
                + (", stratified by domain" if self.strata else "") + f"): n={self.nobs}, events={self.events}, "
                f"{len(self.by_domain)} domain(s), {self.rounds} rounds")
        body = self.summary.to_string(float_format=lambda v: f"{v:.4g}")
        tail = (f"log-likelihood {self.loglik:.6g}; likelihood-ratio test {lr['statistic']:.4g} on {lr['df']} df, "
                f"p = {lr['p_value']:.3g}")
        extra = [f"note: {n}" for n in self.notes] + [f"missing {d}: {w}" for d, w in self.missing.items()]
        return "\n".join([head, body, tail, *extra])

    def _repr_html_(self) -> str:
        lr = self.likelihood_ratio_test
        return (f"<p><b>Federated Cox model</b> <code>{self.formula}</code>: n={self.nobs}, events={self.events}, "
                f"{len(self.by_domain)} domain(s); LR test {lr['statistic']:.4g} on {lr['df']} df, "
                f"p = {lr['p_value']:.3g}</p>" + self.summary.to_html(float_format=lambda v: f"{v:.4g}")
                + "".join(f"<p><i>{n}</i></p>" for n in self.notes))


__all__ = ["CoxResult", "LogrankResult", "SurvivalCurves"]
