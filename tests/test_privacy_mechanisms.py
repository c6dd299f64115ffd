"""Differential-privacy mechanisms and their accountant, and the parts of secure aggregation: the noise
has the scale the papers give, the accountant agrees with Opacus', shares and masks behave."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fednb.domain.release import noisy
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run.builtins import Context
from fednb.privacy import accountant, discrete, fixedpoint, masking, shamir
from fednb.privacy.mechanisms import calibrate, gaussian_delta, gaussian_sigma

# -- noise scale --------------------------------------------------------------------------------


def test_laplace_noise_has_scale_sensitivity_over_epsilon():
    rng = np.random.default_rng(20240501)
    noise = calibrate("laplace", sensitivity=3.0, epsilon=0.5)
    # the rounded query's sensitivity is floor(3 / step) + 1 steps: the scale is 6 plus one step / epsilon
    assert noise.step == 2.0**-11 and noise.scale == pytest.approx(6.0 + noise.step / 0.5, rel=1e-12)
    assert noise.std == pytest.approx(noise.scale * math.sqrt(2), rel=1e-6)
    draws = noise.release(np.zeros(20_000), rng)
    assert np.std(draws) == pytest.approx(noise.std, rel=0.03)
    assert stats.kstest(draws, stats.laplace(scale=6.0).cdf).pvalue > 0.01
    # the same test tells a 20 % wrong scale apart: it has the power to fail
    assert stats.kstest(draws, stats.laplace(scale=7.2).cdf).pvalue < 1e-6


def test_gaussian_sigma_is_the_analytic_calibration():
    sigma = gaussian_sigma(1.0, epsilon=1.0, delta=1e-5)
    # Balle & Wang (2018) Thm 8 holds with equality at the smallest sigma
    assert gaussian_delta(1 / sigma, 1.0) == pytest.approx(1e-5, rel=1e-3)
    assert gaussian_delta(1 / (0.99 * sigma), 1.0) > 1e-5
    assert 3.5 < sigma < 4.0  # ~3.73: below the classical sqrt(2 ln(1.25/delta)) / epsilon = 4.84
    assert sigma < math.sqrt(2 * math.log(1.25 / 1e-5))
    noise = calibrate("gaussian", 2.0, 1.0, 1e-5)
    assert noise.scale == pytest.approx(2 * sigma, rel=1e-3)
    draws = noise.release(np.zeros(20_000), np.random.default_rng(7))
    assert np.std(draws) == pytest.approx(2 * sigma, rel=0.03)
    assert stats.kstest(draws, stats.norm(scale=noise.scale).cdf).pvalue > 0.01


# -- floating-point-safe noise (Mironov 2012) ----------------------------------------------------


def _on_lattice(values, step: float) -> bool:
    k = np.asarray(values, dtype=float) / step
    return bool(np.all(k == np.round(k)))


def test_releases_sit_on_the_lattice_whatever_the_low_bits_of_the_value():
    rng = np.random.default_rng(1)
    for mechanism, delta in (("laplace", 0.0), ("gaussian", 1e-6)):
        noise = calibrate(mechanism, 60.0, 0.1, delta)
        assert noise.step == 2.0**-7
        for secret in (25.9, 25.900000001, 25.9 + 2.0**-30, 1e6 / 3):
            out = noise.release(np.full(200, secret), rng)
            assert _on_lattice(out, noise.step), (mechanism, secret)
    # float noise on a float, as before, is not: the check has the power to fail
    assert not _on_lattice(25.9 + rng.laplace(0.0, 600.0, 200), 2.0**-7)


def test_the_discrete_samplers_have_their_exact_distributions():
    source = discrete.seeded_source(5)
    draws = np.array([discrete.discrete_laplace(Fraction(5, 2), source) for _ in range(20_000)])
    values = np.arange(-25, 26)
    pmf = np.exp(-np.abs(values) / 2.5)
    _chi_square_fits(draws, values, pmf / pmf.sum())
    draws = np.array([discrete.discrete_gaussian(Fraction(9, 1), source) for _ in range(20_000)])
    values = np.arange(-14, 15)
    pmf = np.exp(-values.astype(float) ** 2 / 18)
    _chi_square_fits(draws, values, pmf / pmf.sum())
    assert np.var(draws) == pytest.approx(9.0, rel=0.05)
    support = np.arange(-400, 401)
    weights = np.exp(-np.abs(support) / 2.5)
    assert discrete.laplace_variance(2.5) == pytest.approx(np.sum(weights * support**2) / weights.sum())
    hits = sum(discrete.bernoulli_exp(Fraction(7, 3), source) for _ in range(20_000))
    assert hits / 20_000 == pytest.approx(math.exp(-7 / 3), abs=4 * math.sqrt(0.1 * 0.9 / 20_000))


def _chi_square_fits(draws, values, pmf):
    observed = np.array([(draws == v).sum() for v in values] + [(np.abs(draws) > values.max()).sum()])
    expected = np.append(pmf, max(1.0 - pmf.sum(), 1e-12)) * len(draws)
    keep = expected > 5
    stat = (((observed - expected) ** 2)[keep] / expected[keep]).sum()
    assert stats.chi2.sf(stat, keep.sum() - 1) > 1e-3
    wrong = np.roll(pmf, 1) * len(draws)  # and a distribution shifted by one is told apart
    stat = (((observed[:-1] - wrong) ** 2)[wrong > 5] / wrong[wrong > 5]).sum()
    assert stats.chi2.sf(stat, keep.sum() - 1) < 1e-6


@pytest.mark.parametrize("epsilon,delta", [(0.1, 1e-6), (1.0, 1e-5), (0.5, 1e-8)])
def test_the_discrete_gaussian_spends_no_more_delta_than_asked(epsilon, delta):
    """Canonne, Kamath & Steinke 2020, Thm 7: N_Z(0, s²) on a query of integer sensitivity k is
    (ε, δ)-DP with δ = P[Z > εs²/k − k/2] − e^ε P[Z > εs²/k + k/2]; computed here exactly (to
    double precision) for the calibrated count, it is below the δ spent."""
    noise = calibrate("gaussian", 1.0, epsilon, delta)
    k = math.floor(1.0 / noise.step) + 1
    s = float(noise.units)
    z = np.arange(-int(14 * s), int(14 * s) + 1, dtype=np.float64)
    log_w = -(z**2) / (2 * s * s)
    p = np.exp(log_w - log_w.max())
    p /= p.sum()
    tail = np.cumsum(p[::-1])[::-1]  # tail[i] = P[Z >= z[i]]

    def above(a):
        i = np.searchsorted(z, a, side="right")
        return float(tail[i]) if i < len(z) else 0.0

    exact = above(epsilon * s * s / k - k / 2) - math.exp(epsilon) * above(epsilon * s * s / k + k / 2)
    assert 0 < exact <= delta
    assert exact > delta * (1 - 2e-3)  # and not much below: the noise is not larger than needed


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"age": rng.integers(20, 90, n), "sex": rng.choice(["F", "M"], n),
                         "site": rng.choice(["north", "south", "rare"], n, p=[0.49, 0.49, 0.02])})


def test_noisy_builtins_add_the_stated_noise_around_the_exact_value():
    df, ctx = _frame(), Context(DisclosureSection(), {"sex": ["F", "M"], "site": ["north", "south"]})
    rng = np.random.default_rng(11)
    spend = noisy.Spend(0.5, 0.0, "laplace")
    counts = [noisy.release("count", {}, df, ctx, {}, spend, rng)["n"] for _ in range(4000)]
    assert np.mean(counts) == pytest.approx(len(df), abs=0.15)
    assert np.std(counts) == pytest.approx(math.sqrt(2) / 0.5, rel=0.05)
    # a mean spends epsilon/2 on a count and epsilon/2 on the centred sum (sensitivity (hi - lo) / 2)
    bounds = {"age": [0.0, 120.0]}
    releases = [noisy.release("mean", {"column": "age"}, df, ctx, bounds, spend, rng) for _ in range(4000)]
    t_true = float((df.age - 60.0).sum())
    assert np.std([r["t"] for r in releases]) == pytest.approx(math.sqrt(2) * 60 / 0.25, rel=0.05)
    assert np.mean([r["t"] for r in releases]) == pytest.approx(t_true, abs=4 * 339 / math.sqrt(4000))
    assert releases[0]["dp"]["std"] == {"n": pytest.approx(math.sqrt(2) / 0.25, rel=1e-3),
                                        "t": pytest.approx(math.sqrt(2) * 240, rel=1e-3)}
    assert releases[0]["dp"]["std"]["t"] == calibrate("laplace", 60.0, 0.25).std
    # values outside the owner's bounds are clamped before the sum
    clamped = noisy.release("sum", {"column": "age"}, df, ctx, {"age": [0.0, 30.0]}, noisy.Spend(50, 0, "laplace"), rng)
    assert clamped["sum"] == pytest.approx(df.age.clip(0, 30).sum(), abs=10)
    # crosstabs always show "(other)", so the table's shape never depends on the data
    table = noisy.release("crosstab", {"row": "sex", "col": "site"}, df, ctx, {}, spend, rng)
    assert table["rows"] == ["F", "M", "(other)"] and table["cols"] == ["north", "south", "(other)"]
    exact = pd.crosstab(df.sex, df.site.where(df.site != "rare", "(other)"))
    assert np.abs(np.array(table["counts"])[:2] - exact[["north", "south", "(other)"]].to_numpy()).max() < 40


# -- accountant -------------------------------------------------------------------------------


def test_accountant_matches_the_closed_form():
    # without sampling, RDP of the Gaussian mechanism is alpha / (2 z^2) (Mironov 2017)
    assert accountant.rdp_sampled_gaussian(1.0, 2.0, 10) == pytest.approx(10 / 8)
    # with q = 1 the conversion can only be looser than the exact Gaussian curve (Balle & Wang 2018)
    eps = accountant.epsilon(1.0, 5.0, 4, 1e-5)
    assert gaussian_delta(math.sqrt(4) / 5.0, eps) <= 1e-5 < gaussian_delta(math.sqrt(4) / 5.0, 0.8 * eps)
    assert 11 < accountant.epsilon(0.05, 1.0, 1000, 1e-5) < 13
    z = accountant.noise_multiplier(3.0, 0.04, 300, 1e-5)
    assert accountant.epsilon(0.04, z, 300, 1e-5) <= 3.0
    assert accountant.epsilon(0.04, 0.99 * z, 300, 1e-5) > 3.0
    assert accountant.epsilon(0.04, z, 600, 1e-5) > accountant.epsilon(0.04, z, 300, 1e-5)


def test_accountant_agrees_with_opacus():
    """Against Opacus' own accountant, as Opacus configures it (its default orders, fractional ones
    included), not against Opacus fed our orders."""
    from opacus.accountants import RDPAccountant  # in the test extra: this comparison always runs

    for q, sigma, steps in [(0.05, 1.0, 1000), (0.01, 0.7, 5000), (0.2, 2.5, 60), (0.004, 1.1, 20000),
                            (0.5, 8.0, 10)]:
        theirs = RDPAccountant()
        theirs.history = [(sigma, q, steps)]
        assert accountant.epsilon(q, sigma, steps, 1e-5) == pytest.approx(theirs.get_epsilon(1e-5), rel=1e-6)
    assert list(accountant.ORDERS) == list(RDPAccountant.DEFAULT_ALPHAS)


# -- secure aggregation parts -------------------------------------------------------------------


def test_shamir_needs_threshold_shares():
    secret = int.from_bytes(b"\x17" * 32, "big")
    shares = shamir.split(secret, [1, 2, 3, 4, 5], threshold=3)
    assert shamir.combine({x: shares[x] for x in (1, 3, 5)}) == secret
    assert shamir.combine({x: shares[x] for x in (2, 4, 5)}) == secret
    assert shamir.combine({x: shares[x] for x in (1, 2)}) != secret


def test_fixed_point_ring_sums_and_refuses_overflow():
    rng = np.random.default_rng(5)
    xs = [rng.normal(0, 100, 1000) for _ in range(10)]
    total = sum(fixedpoint.encode(x, parties=10) for x in xs)  # uint64 wraparound
    np.testing.assert_allclose(fixedpoint.decode(total), np.sum(xs, axis=0), atol=10 * 2.0 ** -24)
    with pytest.raises(ValueError, match="fixed-point range"):
        fixedpoint.encode(np.array([1e11]), parties=10)
    with pytest.raises(ValueError, match="finite"):
        fixedpoint.encode(np.array([np.nan]))


def test_pairwise_masks_cancel_and_hide_each_input():
    n, length, session = 4, 5000, b"unit-test-session"
    keys = [masking.KeyPair() for _ in range(n)]
    xs = [np.linspace(-50, 50, length) * (i + 1) for i in range(n)]  # strongly structured inputs
    ys = []
    for i in range(n):
        y = fixedpoint.encode(xs[i], parties=n)
        for j in range(n):
            if j != i:
                y = y + masking.signed_pair_mask(i, j, keys[i].agree(keys[j].public), session, length)
        ys.append(y)
    np.testing.assert_allclose(fixedpoint.decode(sum(ys)), np.sum(xs, axis=0), atol=n * 2.0 ** -24)
    # one masked input alone: uniform on the ring, and uncorrelated with the true input
    u = ys[0].astype(np.float64) / 2.0**64
    assert stats.kstest(u, "uniform").pvalue > 1e-4
    assert abs(np.corrcoef(fixedpoint.decode(ys[0]), xs[0])[0, 1]) < 4 / math.sqrt(length)
    # the unmasked encoding would fail the same test: it has the power to fail
    assert stats.kstest(fixedpoint.encode(xs[0]).astype(np.float64) / 2.0**64, "uniform").pvalue < 1e-6


def test_sealed_shares_open_only_for_their_recipient():
    a, b, c = masking.KeyPair(), masking.KeyPair(), masking.KeyPair()
    box = masking.seal(a.agree(b.public), b"s", 1, 2, b"share")
    assert masking.unseal(b.agree(a.public), b"s", 1, 2, box) == b"share"
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        masking.unseal(c.agree(a.public), b"s", 1, 2, box)
    with pytest.raises(InvalidTag):  # bound to sender and recipient: cannot be replayed to another
        masking.unseal(b.agree(a.public), b"s", 1, 3, box)
