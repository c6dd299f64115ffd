"""Tier-1 mocks: a Gaussian copula over the coarsened marginals, keeping pairwise relationships.

The semiparametric Gaussian copula (Genest, Ghoudi & Rivest, Biometrika 1995; Hoff, Annals of
Applied Statistics 2007): each column is mapped to normal scores through its own ranks, the
correlation matrix of those scores is estimated, and new rows are drawn as correlated normals
mapped back through each column's *coarsened* marginal (:mod:`fednb.domain.data.marginals`).
Categorical levels get the interval of the CDF their share covers, as in the Synthetic Data Vault's
copula model (Patki, Wedge & Veeramachaneni, IEEE DSAA 2016), and are scored by the mean normal
score of that interval; that shrinks each correlation by sd(E[z | level]), which is divided back out
here (the ad-hoc polyserial correction of Olsson, Drasgow & Dorans, Psychometrika 1982).

What it reveals beyond tier 0 is one number per pair of columns (a correlation of normal scores),
never a row: the mock's values still come only from the coarsened marginals, so rare levels and
extremes stay hidden, and the no-real-row guard in :mod:`fednb.domain.data.mock` still applies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from fednb.domain.data.marginals import Marginal

MIN_EIGENVALUE = 1e-6
MAX_CORRELATION = 0.99
MAX_FIT_ROWS = 200_000  # correlations are estimated on at most this many rows, drawn at random


def fit_correlation(df: pd.DataFrame, marginals: list[Marginal], rng: np.random.Generator) -> np.ndarray:
    """The correlation matrix of the columns' normal scores (identity for columns without order)."""
    if len(df) > MAX_FIT_ROWS:
        df = df.iloc[np.sort(rng.choice(len(df), MAX_FIT_ROWS, replace=False))]
    p = len(marginals)
    scores = []
    used = []
    for j, m in enumerate(marginals):
        z = m.scores(df[m.name], rng)
        if z is not None and len(z) > 1:
            scores.append(z)
            used.append(j)
    corr = np.eye(p)
    if len(used) >= 2:
        z = np.column_stack(scores)
        with np.errstate(invalid="ignore", divide="ignore"):
            sub = np.corrcoef(z, rowvar=False)
        shrink = np.array([marginals[j].attenuation() for j in used])
        sub = np.clip(np.nan_to_num(sub, nan=0.0) / np.outer(shrink, shrink), -MAX_CORRELATION, MAX_CORRELATION)
        np.fill_diagonal(sub, 1.0)
        corr[np.ix_(used, used)] = sub
    return nearest_correlation(corr)


def nearest_correlation(corr: np.ndarray) -> np.ndarray:
    """Clip negative eigenvalues and rescale to a unit diagonal (Higham 2002's first step), so the
    matrix can be sampled from even when estimated pairwise from ties and coarse codes."""
    vals, vecs = np.linalg.eigh((corr + corr.T) / 2)
    fixed = (vecs * np.maximum(vals, MIN_EIGENVALUE)) @ vecs.T
    d = np.sqrt(np.diag(fixed))
    return fixed / np.outer(d, d)


def draw_uniforms(corr: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` x p uniforms whose normal scores have correlation ``corr``."""
    chol = np.linalg.cholesky(corr)
    z = rng.standard_normal((rows, corr.shape[0])) @ chol.T
    return ndtr(z)
