"""The result of a federated GLM: estimates, standard errors, tests, a summary table and a plot.

Inference follows statsmodels' GLM: Wald z tests for the binomial and Poisson families (dispersion
1), and for the Gaussian family t tests on n - p degrees of freedom with the dispersion estimated as
Pearson's χ² / (n - p). The summary table is laid out like ``GLMResults.summary()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fednb.errors import MissingExtra

if TYPE_CHECKING:
    from fednb.federated.glm import Fit, Sums

LINKS = {"gaussian": "identity", "binomial": "logit", "poisson": "log"}
WIDTH = 78


@dataclass
class GlmResult:
    """A fitted federated GLM. ``params``, ``bse``, ``tvalues``, ``pvalues`` and ``conf_int()`` are
    indexed by the model's column names; ``by_domain`` has each domain's rows used and dropped, and
    ``missing`` the domains left out and why."""

    formula: str
    family: str
    params: pd.Series
    cov_params: pd.DataFrame
    nobs: int
    scale: float
    deviance: float
    pearson_chi2: float
    llf: float
    null_deviance: float | None
    llnull: float | None
    iterations: int
    converged: bool
    rounds: int
    by_domain: pd.DataFrame
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, formula: str, family: str, fit: Fit, report: tuple[list[dict], dict[str, str], int],
              null: Sums | None) -> GlmResult:
        rows, missing, rounds = report
        s, names = fit.sums, fit.sums.names
        phi = s.dispersion(family)
        cov = pd.DataFrame(fit.inverse * phi, index=names, columns=names)
        by = pd.DataFrame(rows, columns=["domain", "n", "dropped"])
        notes = []
        exact = pd.to_numeric(by["dropped"], errors="coerce")  # "1-4": a domain shows no exact small count
        if exact.isna().any() or exact.sum():
            few = " (some domains show only a range)" if exact.isna().any() else ""
            notes.append(f"{int(exact.sum())} row(s){few} left out for a missing value, a level outside the "
                         "agreed ones, or a transform that is not finite: see by_domain")
        return cls(formula, family, pd.Series(fit.beta, index=names, name="coef"), cov, s.n, phi, s.deviance,
                   s.pearson_chi2, _loglik(family, s), None if null is None else null.deviance,
                   None if null is None else _loglik(family, null), fit.iterations, fit.converged, rounds, by,
                   dict(missing), notes)

    # -- inference -------------------------------------------------------------------------------
    @property
    def statistic(self) -> str:
        """``"t"`` for the Gaussian family (estimated dispersion), ``"z"`` otherwise."""
        return "t" if self.family == "gaussian" else "z"

    @property
    def link(self) -> str:
        return LINKS[self.family]

    @property
    def domains(self) -> list[str]:
        return list(self.by_domain["domain"])

    @property
    def df_model(self) -> int:
        return len(self.params) - int("Intercept" in self.params.index)

    @property
    def df_resid(self) -> int:
        return self.nobs - len(self.params)

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_params.to_numpy())), index=self.params.index, name="std err")

    @property
    def tvalues(self) -> pd.Series:
        return (self.params / self.bse).rename(self.statistic)

    @property
    def pvalues(self) -> pd.Series:
        from fednb.federated import distributions

        stat = np.abs(self.tvalues.to_numpy())
        tail = distributions.t_sf(stat, self.df_resid) if self.statistic == "t" else distributions.norm_sf(stat)
        return pd.Series(2 * tail, index=self.params.index, name=f"P>|{self.statistic}|")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        from fednb.federated import distributions

        q = (distributions.t_ppf(1 - alpha / 2, self.df_resid) if self.statistic == "t"
             else distributions.norm_ppf(1 - alpha / 2))
        return pd.DataFrame({"lower": self.params - q * self.bse, "upper": self.params + q * self.bse})

    @property
    def aic(self) -> float:
        """-2 log-likelihood + 2 p (statsmodels counts df_model + 1, the same whenever there is an intercept)."""
        return -2 * self.llf + 2 * len(self.params)

    @property
    def pseudo_rsquared(self) -> float:
        """Cox & Snell's pseudo R², as statsmodels' ``pseudo_rsquared("cs")``; NaN without a null model.

        For the Gaussian family both log-likelihoods are at their own ML dispersion, so this is the
        usual R² = 1 - deviance / null deviance (statsmodels takes the null model's at the full
        model's dispersion instead).
        """
        if self.llnull is None:
            return math.nan
        return float(1 - math.exp(2 * (self.llnull - self.llf) / self.nobs))

    @property
    def table(self) -> pd.DataFrame:
        """One row per coefficient: estimate, standard error, statistic, p-value, 95% interval."""
        ci = self.conf_int()
        return pd.DataFrame({"coef": self.params, "std err": self.bse, self.statistic: self.tvalues,
                             f"P>|{self.statistic}|": self.pvalues, "[0.025": ci["lower"], "0.975]": ci["upper"]})

    def summary(self, alpha: float = 0.05) -> Summary:
        """The statsmodels-style table (``print(result.summary())``; it renders as HTML in Jupyter)."""
        ci = self.conf_int(alpha)
        lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
        table = pd.DataFrame({"coef": self.params, "std err": self.bse, self.statistic: self.tvalues,
                              f"P>|{self.statistic}|": self.pvalues, lo: ci["lower"], hi: ci["upper"]})
        outcome = self.formula.split("~", 1)[0].strip()
        left = [("Dep. Variable:", outcome), ("Model:", "federated GLM"),
                ("Model Family:", self.family.capitalize()), ("Link Function:", self.link.capitalize()),
                ("Method:", "IRLS"), ("Domains:", str(len(self.domains))),
                ("No. Iterations:", str(self.iterations)), ("Converged:", "yes" if self.converged else "NO")]
        right = [("No. Observations:", str(self.nobs)), ("Df Residuals:", str(self.df_resid)),
                 ("Df Model:", str(self.df_model)), ("Scale:", f"{self.scale:.4f}"),
                 ("Log-Likelihood:", _g(self.llf)), ("Deviance:", _g(self.deviance)),
                 ("Pearson chi2:", f"{self.pearson_chi2:.3g}"),
                 ("Pseudo R-squ. (CS):", f"{self.pseudo_rsquared:.4f}")]
        notes = [f"{d} left out: {why}" for d, why in self.missing.items()] + self.notes
        return Summary("Federated Generalized Linear Model Regression Results", list(zip(left, right)), table, notes)

    # -- display ---------------------------------------------------------------------------------
    def plot(self, *, intercept: bool = False, alpha: float = 0.05, truth: dict[str, float] | None = None):
        """A plotly figure: each coefficient with its confidence interval (and ``truth``, if known)."""
        try:
            import plotly.graph_objects as go
        except ImportError:
            raise MissingExtra("the coefficient plot needs plotly: pip install 'fednb[widgets]'") from None
        names = [n for n in self.params.index if intercept or n != "Intercept"]
        est, ci = self.params[names], self.conf_int(alpha).loc[names]
        fig = go.Figure(go.Scatter(
            x=est, y=names, mode="markers", name=f"estimate, {1 - alpha:.0%} CI",
            error_x={"type": "data", "symmetric": False, "array": ci["upper"] - est, "arrayminus": est - ci["lower"]}))
        if truth:
            shown = [n for n in names if n in truth]
            fig.add_trace(go.Scatter(x=[truth[n] for n in shown], y=shown, mode="markers", name="true value",
                                     marker={"symbol": "x", "size": 10}))
        fig.add_vline(x=0, line_dash="dot", line_color="grey")
        fig.update_layout(title=f"{self.formula} ({self.family}, {len(self.domains)} domains, n={self.nobs})",
                          xaxis_title=f"coefficient ({self.link} scale)", yaxis={"autorange": "reversed"},
                          height=120 + 40 * len(names), template="plotly_white")
        return fig

    def __repr__(self) -> str:
        head = (f"federated {self.family} GLM {self.formula!r} over {len(self.domains)} domain(s), n={self.nobs}, "
                f"{self.iterations} iteration(s){'' if self.converged else ', NOT converged'}")
        tail = "".join(f"\n  missing {d}: {why}" for d, why in self.missing.items())
        tail += "".join(f"\n  note: {n}" for n in self.notes)
        return f"{head}\n{self.table.to_string(float_format=_g)}{tail}"

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def _ipython_display_(self) -> None:
        from fednb.display import show  # the coefficient plot above the summary, in a notebook

        show(self)


@dataclass
class Summary:
    """A results table laid out like statsmodels': a header of fit statistics, then coefficients."""

    title: str
    header: list[tuple[tuple[str, str], tuple[str, str]]]
    table: pd.DataFrame
    notes: list[str]

    def as_text(self) -> str:
        rule = "=" * WIDTH
        half = (WIDTH - 3) // 2
        lines = [self.title.center(WIDTH).rstrip(), rule]
        for (ll, lv), (rl, rv) in self.header:
            lines.append(f"{ll:<{half - len(lv)}}{lv}   {rl:<{WIDTH - half - 3 - len(rv)}}{rv}")
        lines.append(rule)
        name_w = max(14, *(len(n) + 1 for n in self.table.index))
        col_w = 10 if name_w + 10 * len(self.table.columns) <= WIDTH else 11
        lines.append(" " * name_w + "".join(f"{c:>{col_w}}" for c in self.table.columns))
        lines.append("-" * max(WIDTH, name_w + col_w * len(self.table.columns)))
        for name, row in self.table.iterrows():
            lines.append(f"{name:<{name_w}}" + "".join(_cell(v, c, col_w, i == 0) for i, (c, v) in enumerate(row.items())))
        lines.append(rule)
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.as_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<tr><th>{ll}</th><td>{escape(lv)}</td><th>{rl}</th><td>{escape(rv)}</td></tr>"
                       for (ll, lv), (rl, rv) in self.header)
        body = self.table.to_html(float_format=lambda v: _cell(v, "", 0, True).strip())
        notes = "".join(f"<br><i>{escape(n)}</i>" for n in self.notes)
        return f"<div><b>{self.title}</b><table>{head}</table>{body}{notes}</div>"


def _cell(value: Any, column: str, width: int, coef: bool = False) -> str:
    """As statsmodels: estimates to 4 decimals, the rest to 3; p-values never in exponent form."""
    v = float(value)
    if not column.startswith("P>") and v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        text = f"{v:.3e}"
    else:
        text = f"{v:.{4 if coef else 3}f}"
    return f"{text:>{width}}"


def _g(v: float) -> str:
    return f"{v:.6g}"


def _loglik(family: str, s: Sums) -> float:
    """Log-likelihood at the fit: the Gaussian's at its ML dispersion (as statsmodels), else the domains' sum."""
    if family == "gaussian":
        return -s.n / 2 * (math.log(2 * math.pi * s.deviance / s.n) + 1)
    return float(s.loglik) if s.loglik is not None else math.nan
