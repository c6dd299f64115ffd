"""A Gaussian GLM with the identity link is one round over each domain's rows, through real servers,
and equals statsmodels' pooled fit; where the closed-form deviance would lose digits, the domains sum
the residuals in the IRLS rounds and the fit still equals statsmodels'."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

import fednb
from fednb.federated.glm import Sums, least_squares, pool, pooled_start
from tests.api_support import auth
from tests.conftest import live_domains
from tests.test_glm import assert_parity, pooled_fit
from tests.test_glm_sql import glm_round, released

FORMULA = "y ~ x1 + x2 + C(g) + x1:x2"


def site(n: int, seed: int, offset: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(50, 10, n), "x2": rng.uniform(-1, 1, n),
                          "g": rng.choice(["a", "b", "c"], n), "k": np.arange(n) % 10})
    frame["y"] = offset + 3 + 0.02 * frame["x1"] - frame["x2"] + 0.5 * (frame["g"] == "b") + rng.normal(0, 1, n)
    return frame


@pytest.fixture(scope="module")
def sites(tmp_path_factory, alice_token):
    frames = {"site-a": site(400, 1), "site-b": site(700, 2)}
    with live_domains(tmp_path_factory.mktemp("one-pass"), frames, alice_token) as live:
        yield live


def fits_audited(live) -> list[list[str]]:
    """Per domain, the audit actions of each request the analyst's ``fednb.glm`` opened."""
    actions = []
    for d in live:
        domain = d.domain()
        fits = [r.id for r in domain.requests() if r.name == "glm" and r.description.startswith("glm: ")]
        actions += [[e.action for e in domain.audit_entries() if e.object_id == rid] for rid in fits]
        domain.close()
    return actions


def test_a_gaussian_fit_is_one_round_on_every_domain_and_equals_statsmodels(sites, alice_token):
    with fednb.connect([d.url for d in sites], token=alice_token) as fed:
        fit = fednb.glm(FORMULA, data=fed.dataset("patients"))
    truth = pd.concat([d.frame for d in sites], ignore_index=True)
    assert_parity(fit, pooled_fit(FORMULA, truth, "gaussian"))  # deviance, scale, llf, null deviance to 1e-8
    assert fit.rounds == 1 and fit.iterations == 1 and fit.converged
    audited = fits_audited(sites)
    assert len(audited) == len(sites)
    for actions in audited:
        assert actions.count("round") == 1 and actions.count("release") == 1 and actions[-1] == "finish"


def test_an_outcome_far_from_zero_takes_the_irls_rounds_and_still_equals_statsmodels(tmp_path, alice_token):
    """y around 10⁷ with residuals of 1: yᵀy and the deviance differ by 14 digits, so the closed form
    would keep two; the domains sum the residuals at β̂ and at the null model's β instead."""
    frames = {"far-a": site(300, 3, offset=1e7), "far-b": site(500, 4, offset=1e7)}
    with live_domains(tmp_path, frames, alice_token) as live:
        with fednb.connect([d.url for d in live], token=alice_token) as fed:
            fit = fednb.glm(FORMULA, data=fed.dataset("patients"))
        truth = pd.concat([d.frame for d in live], ignore_index=True)
        ref = pooled_fit(FORMULA, truth, "gaussian")
        # the intercept's p-value underflows to 0 here, so the parity is on what has a relative error
        np.testing.assert_allclose(fit.params[ref.params.index], ref.params, rtol=1e-6)  # as assert_parity
        np.testing.assert_allclose(fit.bse[ref.params.index], ref.bse, rtol=1e-6)
        for ours, theirs in [(fit.deviance, ref.deviance), (fit.scale, ref.scale), (fit.llf, ref.llf),
                             (fit.null_deviance, ref.null_deviance)]:
            assert ours == pytest.approx(theirs, rel=1e-8)
        assert fit.rounds == 3 and fit.converged  # the start, β̂ and the null model


def test_the_start_releases_what_any_round_at_beta_zero_releases(sites, alice_token):
    """The Gaussian start's deviance is yᵀy: an analyst could always ask for it with β = 0, so the
    one-round fit releases nothing a hostile analyst could not already have."""
    with httpx.Client(base_url=sites[0].url, headers=auth(alice_token), timeout=120) as client:
        args = {"formula": FORMULA, "family": "gaussian", "levels": {"g": ["a", "b", "c"]}}
        rid, first = glm_round(client, args)
        start = released(first)
        _, zero = glm_round(client, args, {"beta": [0.0] * len(start["columns"])}, rid, 2)
    assert released(zero) == start
    y = sites[0].frame["y"].to_numpy()
    assert start["deviance"] == pytest.approx(float(y @ y), rel=1e-12)


@pytest.mark.parametrize("older", [[0], [1], [0, 1]], ids=["first older", "second older", "both older"])
def test_a_domain_whose_start_is_not_beta_zero_gets_the_irls_rounds(older):
    """A domain of an earlier version starts at μ = y (deviance 0): alone or next to a current one, the
    closed form does not apply, and the fit takes the IRLS round at β̂ as before."""
    rng = np.random.default_rng(7)
    # a small domain next to a large noisy one: the large one's yᵀy alone exceeds the fit's sums
    designs = [np.column_stack([np.ones(n), rng.normal(size=(n, 2))]) for n in (20, 1000)]
    outcomes = [X @ [1.0, 2.0, -1.0] + rng.normal(0, 5, size=len(X)) for X in designs]
    asked = []

    def domain(X, y, beta, start_at_y):
        mu = (y if start_at_y else np.zeros_like(y)) if beta is None else X @ beta
        dev = float(((y - mu) ** 2).sum())
        return Sums.from_result({"columns": ["Intercept", "a", "b"], "n": len(y), "finite": True,
                                 "xtwx": list((X.T @ X)[np.triu_indices(3)]), "xtwz": list(X.T @ y),
                                 "deviance": dev, "pearson_chi2": dev, "y_sum": y.sum()})

    def ask(beta):
        asked.append(beta)
        parts = [domain(X, y, beta, i in older) for i, (X, y) in enumerate(zip(designs, outcomes))]
        return pooled_start(parts, "gaussian") if beta is None else pool(parts)

    fit = least_squares(ask)
    assert len(asked) == 2 and asked[0] is None
    X, y = np.vstack(designs), np.concatenate(outcomes)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-10)
    assert fit.sums.deviance == pytest.approx(float(((y - X @ beta) ** 2).sum()), rel=1e-10)
