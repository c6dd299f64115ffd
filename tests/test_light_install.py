"""``pip install fednb`` is the analyst's client alone: it pulls none of the domain's packages, the
client's whole path (connect, pooled statistics, a secure sum, GLM, Kaplan–Meier, Cox, requests)
runs with them absent, and an owner's command on such an install says what to install."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import fednb

ROOT = Path(__file__).resolve().parents[1]
DOMAIN_ONLY = ("fastapi", "uvicorn", "starlette", "scipy", "pyarrow", "formulaic", "pyroaring")
NEVER_FOR_ANALYSTS = (*DOMAIN_ONLY, "torch", "statsmodels")
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

# Run first in a child interpreter: these packages cannot be imported there, as on a light install.
ABSENT = textwrap.dedent(f"""
    import importlib.abc, sys
    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {NEVER_FOR_ANALYSTS!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Absent())
""")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(requirements: list[str]) -> set[str]:
    """Every distribution ``requirements`` pull, transitively, as pip would install them (no extras)."""
    seen: set[str] = set()
    todo = [NAME.match(r).group(1) for r in requirements]
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            if "extra ==" not in line and (";" not in line or _marker_holds(line.split(";", 1)[1])):
                todo.append(NAME.match(line).group(1))
    return seen


def _marker_holds(marker: str) -> bool:
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def test_the_analyst_install_pulls_no_domain_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pulled = _closure(project["dependencies"])
    assert {"pandas", "numpy", "httpx", "cryptography", "mpmath"} <= pulled
    assert not pulled & {_normal(n) for n in NEVER_FOR_ANALYSTS}, pulled & set(NEVER_FOR_ANALYSTS)
    owners = {_normal(NAME.match(r).group(1)) for r in project["optional-dependencies"]["domain"]}
    assert {"fastapi", "uvicorn", "scipy", "pyarrow", "formulaic", "pyroaring"} <= owners
    assert "fednb[domain,learn,jupyter,test]" in project["optional-dependencies"]["all"]


def _analyst_session(urls: list[str], token: str) -> dict:
    script = ABSENT + textwrap.dedent(f"""
        import json, sys
        import fednb
        fed = fednb.connect({urls!r}, token={token!r})
        ds = fed.dataset("patients")
        out = {{"mean": float(ds.mean("age").value), "secure_count": float(ds.count(secure=True).value)}}
        fit = fednb.glm("readmitted ~ age + bmi + C(sex)", data=ds, family="binomial")
        out["glm"] = {{"params": fit.params.tolist(), "pvalues": fit.pvalues.tolist(),
                       "ci": fit.conf_int().to_numpy().tolist()}}
        gauss = fednb.glm("bmi ~ age + C(sex)", data=ds, family="gaussian")
        out["gaussian"] = {{"pvalues": gauss.pvalues.tolist(), "ci": gauss.conf_int().to_numpy().tolist()}}
        km = ds.kaplan_meier("followup_days", "died", time_grid=10)
        out["km"] = km.survival().tolist()
        out["km_summary"] = repr(km)
        cox = fednb.coxph("followup_days + died ~ age + C(sex)", data=ds, time_grid=20)
        out["cox"] = {{"params": cox.params.tolist(), "lr_p": cox.likelihood_ratio_test["p_value"]}}
        out["requests"] = len(fed.requests())
        out["summaries"] = [repr(fit), repr(cox)]
        fed.close()
        out["loaded"] = sorted({{m.split(".")[0] for m in sys.modules}} & set({NEVER_FOR_ANALYSTS!r}))
        print("RESULT " + json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.split("RESULT ", 1)[1])


def test_the_analyst_client_runs_without_any_domain_package(hospitals, alice_token, patients):
    out = _analyst_session([d.url for d in hospitals], alice_token)
    assert out["loaded"] == []
    # the same numbers as this process's client, which has scipy and formulaic at hand
    assert out["mean"] == pytest.approx(float(patients.mean("age").value), rel=1e-12)
    fit = fednb.glm("readmitted ~ age + bmi + C(sex)", data=patients, family="binomial")
    np.testing.assert_allclose(out["glm"]["params"], fit.params, rtol=1e-9)
    np.testing.assert_allclose(out["glm"]["pvalues"], fit.pvalues, rtol=1e-9)
    np.testing.assert_allclose(out["glm"]["ci"], fit.conf_int().to_numpy(), rtol=1e-9)
    gauss = fednb.glm("bmi ~ age + C(sex)", data=patients, family="gaussian")
    np.testing.assert_allclose(out["gaussian"]["pvalues"], gauss.pvalues, rtol=1e-9)
    np.testing.assert_allclose(out["gaussian"]["ci"], gauss.conf_int().to_numpy(), rtol=1e-9)
    cox = fednb.coxph("followup_days + died ~ age + C(sex)", data=patients, time_grid=20)
    np.testing.assert_allclose(out["cox"]["params"], cox.params, rtol=1e-9)
    assert out["cox"]["lr_p"] == pytest.approx(cox.likelihood_ratio_test["p_value"], rel=1e-9)
    km = patients.kaplan_meier("followup_days", "died", time_grid=10)
    np.testing.assert_allclose(out["km"], km.survival().tolist(), rtol=1e-12)
    assert out["secure_count"] == sum(len(d.frame) for d in hospitals)
    assert out["requests"] >= 5  # the analyst's own requests are listed


def test_an_owner_command_without_the_domain_side_says_what_to_install(tmp_path):
    script = ABSENT + textwrap.dedent(f"""
        import sys
        from fednb.cli import main
        sys.argv = ["fednb", "domain", "serve", {str(tmp_path / "clinic")!r}]
        main()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "install fednb[domain] to serve a domain" in run.stderr
    assert "Traceback" not in run.stderr


# -- what replaces scipy and formulaic on the analyst's side equals them ---------------------------

def test_normal_t_and_chi2_tails_and_quantiles_equal_scipy():
    from scipy import stats

    from fednb.federated import distributions as d

    rng = np.random.default_rng(7)
    for df in (1, 2, 3, 5, 10, 37.5, 100, 1000, 1e5, 1e6):
        x = np.concatenate([rng.normal(0, 3, 40), [1e-3, 2.5, 5, 10, 30, 100, -40]])
        ours, ref = d.t_sf(x, df), stats.t.sf(x, df)
        np.testing.assert_allclose(ours[ref > 0], ref[ref > 0], rtol=1e-10, atol=0)
        assert (ours[ref == 0] == 0).all()  # below the smallest double, as scipy
        for p in (0.5, 0.975, 0.995, 0.025, 1e-10, 1 - 1e-7):
            assert d.t_ppf(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-10, abs=1e-300)
    for k in (1, 2, 3, 7, 50, 500):
        x = np.concatenate([rng.exponential(k, 40), [1e-2, 1e3]])
        np.testing.assert_allclose(d.chi2_sf(x, k), stats.chi2.sf(x, k), rtol=1e-10, atol=0)
    z = np.linspace(-37, 37, 301)
    np.testing.assert_allclose(d.norm_sf(z), stats.norm.sf(z), rtol=1e-10, atol=0)
    for p in (1e-300, 1e-10, 0.025, 0.3, 0.975, 1 - 1e-12):
        assert d.norm_ppf(p) == pytest.approx(stats.norm.ppf(p), rel=1e-10)
    assert isinstance(d.t_sf(1.5, 4), float) and d.t_sf(np.ones((2, 3)), 4).shape == (2, 3)
    assert np.isnan(d.t_sf(1.0, 0)) and np.isnan(d.t_ppf(0.975, 0))  # no residual degrees of freedom: NaN, as scipy


def test_the_t_tail_near_zero_is_exact_where_scipy_is_not():
    """At one degree of freedom t is Cauchy: P(T > x) = 1/2 - atan(x)/pi exactly; scipy loses digits
    near 0 (4.8e-9 relative at x = 1e-8), so these points are checked against the closed form."""
    from fednb.federated import distributions as d

    for x in (1e-8, 1e-5, 0.3, 7.0):
        assert d.t_sf(x, 1) == pytest.approx(0.5 - np.arctan(x) / np.pi, rel=1e-14)


FORMULAS = ["y ~ b:a + a", "y ~ c*b*a", "y ~ (c+b+a)**2", "y ~ C(s) + x + I(z**2) + log(w) + np.log(v)",
            "y ~ b/a", "y ~ (b+c)/a", "y ~ x - 1", "y ~ 0 + x", "y~ z:C(s) + C(s)", "y ~ I(a*b) + a",
            "y ~ a + a", "y ~ -1 + b", "y ~ a - a + b", "y ~ (a+b)^2 - a:b", "y ~ 1", "y ~ a.b", "y ~ -a + b",
            "y ~ a - 0", "y ~ +a", "y ~ a**2", "y ~ 0", "y ~ a + 0 + b", "y ~ a/(b+c)", "y~a:b:a",
            "y ~ x - 1 + 1", "y ~ log(a)*C(b)", "y ~ (a + b)/c/d", "a.b ~ x", "y ~ (a+b+c+d)**3 - a:b:c",
            "readmitted ~ age + bmi + C(sex) + smoker + diabetes", "~ age", "y ~ y", "log(y) ~ x",
            "y ~ center(x)", "y ~ I(x.real)", "y ~ 2 + x", "y ~ x +", "y ~ C(x + 1)"]


def _both(formula: str):
    from fednb import formula, formula_terms
    from fednb.errors import InvalidInput

    found = []
    for read in (formula.parse, formula_terms.read):
        try:
            s = read(formula)
            found.append((s.outcome, s.variables, s.categorical, s.terms))
        except InvalidInput as exc:
            found.append(("refused", str(exc).split(":")[0][:30]))
    return found


@pytest.mark.parametrize("formula", FORMULAS)
def test_the_analysts_reading_of_a_formula_equals_formulaics(formula):
    domain, analyst = _both(formula)
    assert analyst == domain or (analyst[0] != "refused" and domain[0] == "refused"), (domain, analyst)


def test_random_formulas_read_the_same_on_both_sides():
    """Where formulaic reads a formula the analyst's reading is identical (outcome, columns in order,
    categorical ones, terms); the analyst never refuses what a domain would fit."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    leaf = st.sampled_from(["a", "b", "c", "C(s)", "log(x)", "I(x ** 2)", "1", "0"])
    expr = st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" + ", " - ", ":", "*", "/"]), inner).map(lambda t: f"({''.join(t)})"),
        st.tuples(inner, st.integers(1, 3)).map(lambda t: f"({t[0]})**{t[1]}")), max_leaves=6)

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(expr)
    def same(rhs):
        domain, analyst = _both(f"y ~ {rhs}")
        if domain[0] != "refused":
            assert analyst == domain, rhs

    same()


def test_the_privacy_special_functions_equal_scipy():
    """The accountant's and the Gaussian mechanism's special functions, without scipy (fednb.privacy.special)."""
    from scipy import special as scipy_special

    from fednb.privacy import special

    for x in [*np.linspace(-60, 40, 1001), -1e3, -1e5, -20.0001, -19.9999, 5.9999, 6.0001, -1e-9, 0.0, 1e-9]:
        assert special.log_ndtr(x) == pytest.approx(scipy_special.log_ndtr(x), rel=1e-10, abs=1e-300)
    for x in np.linspace(-37, 37, 501):
        assert special.ndtr(x) == pytest.approx(scipy_special.ndtr(x), rel=1e-10)
    for alpha in (1.1, 1.5, 2.7, 10.9, 0.3, 33.3, 5.0):
        for i in range(300):
            assert special.binom(alpha, i) == pytest.approx(scipy_special.binom(alpha, i), rel=1e-10, abs=1e-300)
    values = np.random.default_rng(3).normal(0, 50, 200)
    assert special.logsumexp(values) == pytest.approx(scipy_special.logsumexp(values), rel=1e-12)
    assert special.logsumexp([-np.inf, -np.inf]) == -np.inf


def test_the_accountant_gives_the_same_epsilon_as_with_scipy(monkeypatch):
    from scipy.special import binom, gammaln, log_ndtr, logsumexp

    from fednb.privacy import accountant

    def with_scipy(q: float, z: float, order: float) -> float:
        if not float(order).is_integer():
            return accountant._log_a_fractional(q, z, float(order)) / (order - 1)
        k = np.arange(int(order) + 1, dtype=float)
        terms = (gammaln(order + 1) - gammaln(k + 1) - gammaln(order - k + 1) + k * np.log(q)
                 + (order - k) * np.log1p(-q) + (k * k - k) / (2 * z * z))
        return float(logsumexp(terms)) / (order - 1)

    for q, z in ((0.01, 1.1), (0.001, 0.8), (0.2, 3.0)):
        for order in (2, 5, 12, 63):
            assert accountant.rdp_sampled_gaussian(q, z, order) == pytest.approx(with_scipy(q, z, order), rel=1e-10)
    # the fractional orders' series, with scipy's binomial and log_ndtr put back in
    import fednb.privacy.special as special

    ours = [accountant.rdp_sampled_gaussian(0.01, 1.1, a) for a in (1.5, 2.7, 10.9)]
    monkeypatch.setattr(special, "binom", lambda a, i: float(binom(a, i)))
    monkeypatch.setattr(special, "log_ndtr", lambda x: float(log_ndtr(x)))
    theirs = [accountant.rdp_sampled_gaussian(0.01, 1.1, a) for a in (1.5, 2.7, 10.9)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
