"""Pooling the domains' released aggregates into exact federated statistics.

Counts, sums and tables add up. Means are weighted by n. Variances combine (n, mean, M2) with the
pairwise update of Chan, Golub & LeVeque (1979), exact and numerically stable. A table cell that any
domain suppressed stays unknown in the pooled table (NA), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Pooled:
    """A federated statistic: ``value`` pooled over ``by_domain``; ``missing`` says who is absent and why.

    When domains added differential-privacy noise, ``se`` is the standard error that noise gives the
    value (a number, or one per cell) and :meth:`ci` a confidence interval; ``epsilon`` what each
    domain's release spent of your budget.
    """

    statistic: str
    value: Any
    by_domain: pd.DataFrame
    missing: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    request: Any = None
    se: Any = None
    epsilon: dict[str, float] = field(default_factory=dict)

    def ci(self, level: float = 0.95) -> tuple[Any, Any]:
        """(low, high) around ``value`` from the noise's standard error; exact values have none."""
        if self.se is None:
            raise ValueError(f"{self.statistic} is exact (no noise was added), so it has no noise interval")
        value = self.value["count"] if isinstance(self.value, pd.DataFrame) and "count" in self.value else self.value
        return interval(value, self.se, level)

    @property
    def domains(self) -> list[str]:
        return list(self.by_domain["domain"]) if "domain" in self.by_domain else []

    @property
    def receipts(self) -> dict[str, list[dict]]:
        """Each domain's signed receipts of its release ({domain: [...]}); ``request.save(FILE)`` then
        ``fednb verify FILE`` checks them offline."""
        return self.request.receipts if self.request is not None else {}

    def __repr__(self) -> str:
        head = f"{self.statistic} over {len(self.domains)} domain(s): "
        value = self.value if np.isscalar(self.value) else f"\n{self.value}"
        if self.se is not None and np.isscalar(self.se):
            value = f"{value:.6g} ± {self.se:.3g} (noise s.e.)"
        tail = "".join(f"\n  missing {d}: {why}" for d, why in self.missing.items())
        tail += "".join(f"\n  note: {n}" for n in self.notes)
        return head + f"{value}{tail}"

    def _repr_html_(self) -> str:
        body = (self.value.to_html() if hasattr(self.value, "to_html")
                else f"<b>{self.value:.6g}</b>" if isinstance(self.value, float) else f"<b>{self.value}</b>")
        extra = "".join(f"<br><i>missing {d}: {why}</i>" for d, why in self.missing.items())
        extra += "".join(f"<br><i>{n}</i>" for n in self.notes)
        return f"<div><b>{self.statistic}</b> over {len(self.domains)} domain(s): {body}{extra}</div>"

    def _ipython_display_(self) -> None:
        from fednb.display import show  # tables and plots where ipywidgets can show them

        show(self)


def interval(value: Any, se: Any, level: float) -> tuple[Any, Any]:
    """Normal-approximation interval value ± z·se (the sum of independent noises is close to normal)."""
    from fednb.federated.distributions import norm_ppf

    z = norm_ppf(0.5 + level / 2)
    return value - z * se, value + z * se


def pool_count(parts: dict[str, dict]) -> int:
    return int(sum(p["n"] for p in parts.values()))


def pool_sum(parts: dict[str, dict]) -> float:
    return float(sum(p["sum"] for p in parts.values()))


def pool_mean(parts: dict[str, dict]) -> float:
    n = sum(p["n"] for p in parts.values())
    return float(sum(p["n"] * p["mean"] for p in parts.values()) / n)


def combine_moments(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    """(n, mean, M2) of the union of two groups (Chan et al. 1979)."""
    na, ma, m2a = a
    nb, mb, m2b = b
    n = na + nb
    if n == 0:
        return 0, 0.0, 0.0
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n


def pool_variance(parts: dict[str, dict], ddof: int = 1) -> float:
    acc = (0, 0.0, 0.0)
    for p in parts.values():
        acc = combine_moments(acc, (p["n"], p["mean"], p["m2"]))
    n, _, m2 = acc
    return float(m2 / (n - ddof)) if n > ddof else float("nan")


def _add_cells(tables: list[list]) -> list:
    """Cell-wise sum; a cell suppressed (None) anywhere is unknown in the pool."""
    out = []
    for cells in zip(*tables):
        out.append(None if any(c is None for c in cells) else int(sum(cells)))
    return out


def pool_histogram(parts: dict[str, dict]) -> pd.DataFrame:
    edges = next(iter(parts.values()))["edges"]
    rows = [[p["below"]] + list(p["counts"]) + [p["above"]] for p in parts.values()]
    cells = _add_cells(rows)
    lefts = [-np.inf] + list(edges)
    rights = list(edges) + [np.inf]
    return pd.DataFrame({"left": lefts, "right": rights,
                         "count": pd.array(cells, dtype="Int64")})


def pool_crosstab(parts: dict[str, dict]) -> pd.DataFrame:
    return sum_crosstabs(parts, "Int64", int)


def sum_crosstabs(parts: dict[str, dict], dtype: str, cast) -> pd.DataFrame:
    """The domains' crosstabs added cell by cell over the union of their rows and columns; a cell
    suppressed by any domain (``None``) stays unknown (NA) in the sum."""
    frames = [pd.DataFrame(p["counts"], index=p["rows"], columns=p["cols"], dtype=object) for p in parts.values()]
    rows = list(dict.fromkeys(r for f in frames for r in f.index))
    cols = list(dict.fromkeys(c for f in frames for c in f.columns))
    aligned = [f.reindex(index=rows, columns=cols, fill_value=0) for f in frames]
    total = pd.DataFrame(index=rows, columns=cols, dtype=dtype)
    for r in rows:
        for c in cols:
            cells = [f.at[r, c] for f in aligned]
            total.at[r, c] = pd.NA if any(v is None or v is pd.NA for v in cells) else cast(sum(cells))
    return total


def by_domain_frame(parts: dict[str, dict], keys: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame([{"domain": d, **{k: p.get(k) for k in keys}} for d, p in parts.items()])
