"""Federated GLMs through real domain servers equal statsmodels on the concatenated rows."""

from __future__ import annotations

import json
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as statsmodels  # the test extra: parity is checked against it, never skipped
import statsmodels.formula.api as smf

import fednb
from fednb.demo import data
from tests.conftest import live_domains, start_live

LOGISTIC = "readmitted ~ age + bmi + C(sex) + smoker + diabetes"
RTOL = 1e-6


def pooled_fit(formula: str, frame: pd.DataFrame, family: str):
    """statsmodels' GLM on the concatenated rows (booleans as 0/1, so terms are named alike).

    Converged to tol=1e-12: at its default (a deviance change under 1e-8) statsmodels stops one step
    early for the covariance, which it takes from the weights of the iterate before its last, so
    its standard errors are off the converged ones by up to ~1e-6 (benchmarks/glm_parity.py shows both).
    """
    families = {"gaussian": statsmodels.families.Gaussian(), "binomial": statsmodels.families.Binomial(),
                "poisson": statsmodels.families.Poisson()}
    tidy = frame.assign(**{c: frame[c].astype(int) for c in frame.columns if frame[c].dtype == bool})
    return smf.glm(formula, tidy, family=families[family]).fit(use_t=family == "gaussian", tol=1e-12)


def max_rel(ours: pd.Series, ref: pd.Series) -> float:
    assert sorted(ours.index) == sorted(ref.index)
    return float(np.max(np.abs(ours[ref.index].to_numpy() - ref.to_numpy()) / np.abs(ref.to_numpy())))


def assert_parity(fit, ref) -> None:
    assert max_rel(fit.params, ref.params) < RTOL
    assert max_rel(fit.bse, ref.bse) < RTOL
    assert max_rel(fit.tvalues, ref.tvalues) < RTOL
    # a tiny p-value magnifies relative differences in z by about z², so compare it more loosely
    assert max_rel(fit.pvalues, ref.pvalues) < 1e-3
    ci, ref_ci = fit.conf_int(), ref.conf_int()
    assert max_rel(ci["lower"], ref_ci[0]) < RTOL and max_rel(ci["upper"], ref_ci[1]) < RTOL
    assert fit.nobs == ref.nobs and fit.df_resid == ref.df_resid and fit.df_model == ref.df_model
    # the Gaussian's pseudo R² is the usual R² here (see GlmResult.pseudo_rsquared)
    r2 = 1 - ref.deviance / ref.null_deviance if fit.family == "gaussian" else ref.pseudo_rsquared("cs")
    for ours, theirs in [(fit.deviance, ref.deviance), (fit.pearson_chi2, ref.pearson_chi2), (fit.llf, ref.llf),
                         (fit.aic, ref.aic), (fit.scale, ref.scale), (fit.null_deviance, ref.null_deviance),
                         (fit.pseudo_rsquared, r2)]:
        assert ours == pytest.approx(theirs, rel=1e-8)


def clinic(name: str, seed: int) -> pd.DataFrame:
    """A hospital's patients with a count outcome, a ward, some missing bmi, and outcomes that a ward
    predicts perfectly: every ICU patient has a complication and no follow-up."""
    rng = np.random.default_rng(seed)
    frame = data.with_visits(data.hospital(name), seed)
    n = len(frame)
    ward = rng.choice(["cardio", "general", "icu"], n, p=[0.3, 0.6, 0.1])
    if name == "hospital-a":
        ward[:3] = "burns"  # a level too rare to publish (3 < min_cell_count)
    icu = ward == "icu"
    return frame.assign(
        bmi=frame["bmi"].where(rng.random(n) > 0.03),
        ward=ward,
        complication=np.where(icu, 1, (rng.random(n) < 0.25).astype(int)),
        followups=np.where(icu, 0, rng.poisson(2.0, n)),
    )


@pytest.fixture(scope="module")
def clinics(tmp_path_factory, alice_token):
    frames = {f"clinic-{h[-1]}": clinic(h, seed) for h, seed in zip(data.HOSPITALS, (101, 202))}
    with live_domains(tmp_path_factory.mktemp("clinics"), frames, alice_token) as live:
        yield live


@pytest.fixture(scope="module")
def visits(clinics, alice_token):
    fed = fednb.connect([d.url for d in clinics], token=alice_token)
    yield fed.dataset("patients")
    fed.close()


@pytest.fixture(scope="module")
def clinic_truth(clinics) -> pd.DataFrame:
    return pd.concat([d.frame for d in clinics], ignore_index=True)


# -- parity with a pooled fit ----------------------------------------------------------------------

def test_logistic_equals_pooled_statsmodels(patients, truth, hospitals):
    fit = fednb.glm(LOGISTIC, data=patients, family="binomial")
    assert fit.converged and fit.statistic == "z" and fit.scale == 1.0
    assert_parity(fit, pooled_fit(LOGISTIC, truth, "binomial"))
    assert fit.by_domain.to_dict("records") == [{"domain": d.name, "n": len(d.frame), "dropped": 0} for d in hospitals]
    assert fit.missing == {} and fit.nobs == len(truth)
    assert list(fit.params.index) == ["Intercept", "age", "bmi", "C(sex)[T.M]", "smoker", "diabetes"]


def test_linear_model_uses_t_with_pearson_dispersion(patients, truth):
    formula = "systolic_bp ~ age + bmi + C(sex) + smoker + np.log(bmi) + C(sex):age"
    fit = fednb.glm(formula, data=patients)  # gaussian by default
    ref = pooled_fit(formula, truth, "gaussian")
    assert fit.statistic == "t" and fit.family == "gaussian"
    assert fit.scale == pytest.approx(ref.pearson_chi2 / ref.df_resid, rel=1e-10)
    assert_parity(fit, ref)
    assert fit.iterations == 1, "a linear model is one weighted least-squares step"


def test_poisson_equals_pooled_statsmodels_with_missing_values(visits, clinics, clinic_truth):
    formula = "visits ~ age + bmi + C(sex) + smoker + diabetes"
    fit = fednb.glm(formula, data=visits, family="poisson")
    kept = clinic_truth.dropna(subset=["bmi"])
    assert_parity(fit, pooled_fit(formula, kept, "poisson"))
    expected = [{"domain": d.name, "n": int(d.frame.bmi.notna().sum()), "dropped": int(d.frame.bmi.isna().sum())}
                for d in clinics]
    assert fit.by_domain.to_dict("records") == expected
    assert any("left out for a missing value" in n for n in fit.notes)


def test_unpublished_levels_are_left_out_and_say_so(visits, clinic_truth):
    # 'burns' has 3 rows on clinic-a: not in the public levels, so those rows are dropped there; the
    # count of 3 is itself a small cell, so clinic-a shows only that 1 to 4 rows were dropped
    assert "burns" not in visits.column("ward")["levels"]
    fit = fednb.glm("visits ~ age + C(ward)", data=visits, family="poisson")
    kept = clinic_truth[clinic_truth.ward != "burns"]
    assert_parity(fit, pooled_fit("visits ~ age + C(ward)", kept, "poisson"))
    assert fit.by_domain.set_index("domain")["dropped"].to_dict() == {"clinic-a": "1-4", "clinic-b": 0}
    assert list(fit.params.index) == ["Intercept", "age", "C(ward)[T.general]", "C(ward)[T.icu]"]


def test_levels_can_be_reordered_to_choose_the_reference(patients, truth):
    fit = fednb.glm("readmitted ~ age + C(sex)", data=patients, family="binomial", levels={"sex": ["M", "F"]})
    assert "C(sex)[T.F]" in fit.params.index
    base = fednb.glm("readmitted ~ age + C(sex)", data=patients, family="binomial")
    assert fit.params["C(sex)[T.F]"] == pytest.approx(-base.params["C(sex)[T.M]"], rel=1e-9)


def test_logistic_recovers_the_generating_model(patients):
    fit = fednb.glm(LOGISTIC, data=patients, family="binomial")
    for name, true in data.READMISSION_MODEL.items():
        assert abs(fit.params[name] - true) < 3 * fit.bse[name], name


def test_the_demo_step_compares_with_the_generating_model(patients, capsys):
    from fednb.demo.tour import _regression

    checks: list[tuple[bool, str]] = []
    _regression(patients, lambda ok, what: checks.append((ok, what)))
    assert len(checks) == len(data.READMISSION_MODEL) and all(ok for ok, _ in checks)
    out = capsys.readouterr().out
    assert "4b. A federated logistic regression" in out
    assert all(name in out for name in data.READMISSION_MODEL)


def test_where_filters_rows_like_the_pooled_statistics(patients, truth):
    fit = fednb.glm("readmitted ~ age + bmi + smoker", data=patients, family="binomial", where="sex == 'F'")
    assert_parity(fit, pooled_fit("readmitted ~ age + bmi + smoker", truth[truth.sex == "F"], "binomial"))


# -- disclosure control on the domains -------------------------------------------------------------

def test_a_domain_with_too_few_residual_degrees_of_freedom_is_left_out_and_named(patients, hospitals):
    a, b = (d.frame for d in hospitals)
    where = "age >= 85"
    # 6 parameters need n - 6 >= 10 residual degrees of freedom (safe_dof_threshold): hospital-a has 15 rows
    assert 10 <= len(a.query(where)) < 16 <= len(b.query(where))
    fit = fednb.glm(LOGISTIC, data=patients, family="binomial", where=where)
    assert fit.domains == ["hospital-b"]
    assert "leaves fewer than 10 residual degrees of freedom" in fit.missing["hospital-a"]
    assert_parity(fit, pooled_fit(LOGISTIC, b.query(where), "binomial"))
    assert "hospital-a left out: blocked by disclosure control" in str(fit.summary())
    with pytest.raises(fednb.NotEnoughDomains, match="hospital-a: blocked by disclosure control"):
        fednb.glm(LOGISTIC, data=patients, family="binomial", where=where, min_domains=2)


def test_a_gaussian_glm_with_five_covariates_on_150_rows_per_domain_passes(patients, hospitals):
    # a small hospital's honest model: 6 parameters on ~150 rows was refused by a values-per-rows count
    where = "age >= 70"
    rows = [len(d.frame.query(where)) for d in hospitals]
    assert all(100 <= n <= 260 for n in rows), rows
    formula = "systolic_bp ~ age + bmi + C(sex) + smoker + diabetes"
    fit = fednb.glm(formula, data=patients, family="gaussian", where=where)
    assert fit.domains == [d.name for d in hospitals] and fit.missing == {}
    truth = pd.concat([d.frame.query(where) for d in hospitals], ignore_index=True)
    assert_parity(fit, pooled_fit(formula, truth, "gaussian"))


def test_too_few_rows_is_blocked_everywhere(patients):
    with pytest.raises(fednb.NotEnoughDomains) as err:
        fednb.glm("readmitted ~ age", data=patients, family="binomial", where="age >= 94")
    assert all("minimum cohort" in why for why in err.value.problems.values())


def test_a_hidden_level_named_in_levels_is_an_empty_column_like_any_made_up_name(visits):
    # 'burns' (3 rows on clinic-a) is not in the listing: naming it must answer exactly as a name that
    # does not exist, or levels= would be an oracle for hidden rare categories
    clinic_a = visits.fed.dataset("patients", domains=["clinic-a"])
    answers = []
    for guess in ("burns", "zzz"):
        with pytest.raises(fednb.SingularDesign) as err:
            fednb.glm("visits ~ age + C(ward)", data=clinic_a, family="poisson",
                      levels={"ward": ["cardio", guess, "general", "icu"]})
        answers.append(str(err.value).replace(guess, "GUESS"))
    assert answers[0] == answers[1] and "occur nowhere" in answers[0]


def test_a_public_level_on_fewer_than_min_cell_count_rows_is_blocked(visits):
    clinic_a = visits.fed.dataset("patients", domains=["clinic-a"])
    with pytest.raises(fednb.NotEnoughDomains, match=r"model column 'C\(ward\)\[T.icu\]' differs from its most "
                                                     r"common value on fewer than 5 rows"):
        fednb.glm("visits ~ age + C(ward)", data=clinic_a, family="poisson", where="age >= 80")


def test_unsafe_formulas_are_refused_before_and_on_the_domain(patients, hospitals, alice_token):
    for bad, why in [("readmitted ~ center(age)", "differ between domains"),
                     ("readmitted ~ I(age.real)", "not allowed"), ("~ age", "one outcome")]:
        with pytest.raises(fednb.FednbError, match=why):
            fednb.glm(bad, data=patients, family="binomial")
    from fednb.client.http import DomainClient, run

    client = DomainClient(hospitals[0].url, alice_token)
    for formula in ["readmitted ~ np.random.seed(age)", "readmitted ~ I(age.__class__)",
                    "readmitted ~ __import__('os').getpid()"]:
        body = {"dataset": "patients", "kind": "builtin", "name": "glm",
                "args": {"formula": formula, "family": "binomial"}}
        with pytest.raises(fednb.DomainError, match="bad arguments for glm: formula") as err:
            run(client.post_request(body))
        assert err.value.status in (400, 422)
    run(client.aclose())


def test_glm_is_a_default_auto_approved_builtin(hospitals):
    from fednb.models import BUILTINS

    assert "glm" in BUILTINS
    policy = (hospitals[0].path / "policy.toml").read_text()
    assert '"glm"' in next(line for line in policy.splitlines() if line.startswith("auto_approve"))


# -- models that cannot be fitted ------------------------------------------------------------------

def test_collinear_terms_are_a_singular_design(patients):
    with pytest.raises(fednb.SingularDesign, match=r"collinear \(age, I\(2 \* age\)\).*drop one"):
        fednb.glm("readmitted ~ age + I(2 * age) + bmi", data=patients, family="binomial")


def test_a_level_absent_everywhere_is_a_singular_design(patients):
    with pytest.raises(fednb.SingularDesign, match=r"C\(sex\)\[T\.X\].*level\(s\) X occur nowhere"):
        fednb.glm("readmitted ~ age + C(sex)", data=patients, family="binomial", levels={"sex": ["F", "M", "X"]})
    with pytest.raises(fednb.SingularDesign, match=r"C\(sex\)\[T\.M\]"):
        fednb.glm("readmitted ~ age + C(sex)", data=patients, family="binomial", where="sex == 'F'")


def test_perfect_separation_in_a_logistic_model(visits):
    with pytest.raises(fednb.PerfectSeparation, match="fitted probabilities reach 0 or 1") as err:
        fednb.glm("complication ~ age + C(ward)", data=visits, family="binomial")
    assert err.value.terms == ["C(ward)[T.icu]"]


def test_complete_separation_in_a_logistic_model(patients):
    # every selected patient was readmitted: the intercept runs off to infinity
    with pytest.raises(fednb.PerfectSeparation, match="grow without bound") as err:
        fednb.glm("readmitted ~ age + bmi", data=patients, family="binomial", where="readmitted == 1")
    assert "Intercept" in err.value.terms


def test_perfect_separation_in_a_poisson_model(visits):
    with pytest.raises(fednb.PerfectSeparation, match="fitted means reach 0") as err:
        fednb.glm("followups ~ age + C(ward)", data=visits, family="poisson")
    assert err.value.terms == ["C(ward)[T.icu]"]


def test_non_convergence_is_an_error_with_the_last_iterate(patients):
    with pytest.raises(fednb.NotConverged, match=r"did not converge in 2 iteration\(s\).*raise maxiter") as err:
        fednb.glm(LOGISTIC, data=patients, family="binomial", maxiter=2)
    last = err.value.result
    assert last is not None and not last.converged and last.iterations == 2
    assert "NOT converged" in repr(last)
    assert re.search(r"^Converged: +NO ", str(last.summary()), re.M)


def test_bad_arguments_are_clear(patients):
    with pytest.raises(fednb.FednbError, match="family must be one of"):
        fednb.glm(LOGISTIC, data=patients, family="gamma")
    with pytest.raises(fednb.FednbError, match="outcome 'sex' is categorical"):
        fednb.glm("sex ~ age", data=patients, family="binomial")
    with pytest.raises(fednb.FednbError, match="levels= names"):
        fednb.glm(LOGISTIC, data=patients, family="binomial", levels={"ward": ["a"]})
    with pytest.raises(fednb.FednbError, match="0/1 or boolean outcome"):
        fednb.glm("systolic_bp ~ age", data=patients, family="binomial")


# -- presenting the result -------------------------------------------------------------------------

def test_summary_reads_like_statsmodels(patients):
    fit = fednb.glm(LOGISTIC, data=patients, family="binomial")
    text = str(fit.summary())
    assert "Federated Generalized Linear Model Regression Results" in text
    for label in ("Dep. Variable:", "readmitted", "Model Family:", "Binomial", "Link Function:", "Logit",
                  "No. Observations:", str(fit.nobs), "Df Residuals:", "Deviance:", "Pseudo R-squ. (CS):",
                  "P>|z|", "[0.025", "0.975]"):
        assert label in text, label
    row = next(line for line in text.splitlines() if line.startswith("age "))
    assert f"{fit.params['age']:.4f}" in row and f"{fit.bse['age']:.3f}" in row
    assert max(len(line) for line in text.splitlines()) <= 78
    assert "<table>" in fit._repr_html_()
    json.dumps(fit.table.to_dict())  # plain numbers


def test_coefficient_plot_has_confidence_intervals(patients, monkeypatch):
    fit = fednb.glm(LOGISTIC, data=patients, family="binomial")
    fig = fit.plot(truth=data.READMISSION_MODEL)
    est = fig.data[0]
    assert list(est.y) == list(fit.params.index[1:])
    ci = fit.conf_int().iloc[1:]
    assert np.allclose(np.asarray(est.x) + np.asarray(est.error_x.array), ci["upper"])
    assert np.allclose(np.asarray(est.x) - np.asarray(est.error_x.arrayminus), ci["lower"])
    assert fig.data[1].name == "true value"
    monkeypatch.setitem(sys.modules, "plotly", None)
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(fednb.MissingExtra, match=r"pip install 'fednb\[widgets\]'"):
        fit.plot()


# -- the algorithm without servers -----------------------------------------------------------------

def _local_ask(frames: list[pd.DataFrame], formula: str, family: str, levels: dict):
    from fednb.domain.review.policy import DisclosureSection
    from fednb.domain.run.builtins.glm import GlmArgs, glm
    from fednb.domain.run.builtins.registry import Context
    from fednb.federated.glm import Sums, pool

    ctx = Context(DisclosureSection())

    def ask(beta):
        args = GlmArgs(formula=formula, family=family, levels=levels, beta=None if beta is None else list(beta))
        return pool([Sums.from_result(glm(args, f, ctx)) for f in frames])

    return ask


def test_an_overshooting_step_is_halved():
    from fednb.federated.glm import irls

    frames = [data.with_visits(data.hospital(h), 5) for h in data.HOSPITALS]
    ask = _local_ask(frames, "visits ~ age + smoker", "poisson", {})
    plain = irls(ask, "poisson")
    asked = []

    def overshooting(beta):
        asked.append(beta)
        if len(asked) == 2:  # the first step "overflows" on a domain
            from fednb.federated.glm import Sums

            return Sums(plain.sums.names, plain.sums.n, False)
        return ask(beta)

    halved = irls(overshooting, "poisson")
    assert np.allclose(asked[2], asked[1] / 2)  # halfway back to the zero anchor
    assert np.allclose(halved.beta, plain.beta, rtol=1e-9)


def test_import_fednb_stays_light():
    import subprocess

    code = ("import sys, fednb; fednb.glm; "
            "print(sorted(m for m in ('pandas', 'formulaic', 'scipy', 'statsmodels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_warnings_from_a_fit(patients):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fednb.glm(LOGISTIC, data=patients, family="binomial")


def test_the_owner_approves_a_fit_once_and_its_rounds_follow(tmp_path, alice_token):
    """With glm reviewed by hand, one approval covers every IRLS round, within its round budget."""
    import re
    import threading
    import time

    from fednb.demo import data
    from fednb.models import BUILTINS

    listed = "auto_approve = [" + ", ".join(f'"{b}"' for b in BUILTINS) + "]"
    live = start_live(tmp_path, "strict-glm", data.hospital("hospital-b"), alice_token,
                      policy_edits={listed: 'auto_approve = ["count"]'})
    approvals = []

    def owner() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not approvals:
            d = live.domain()
            for r in d.requests(status="pending"):
                approvals.append(d.approve(r.id, "formula reviewed").id)
            d.close()
            time.sleep(0.1)

    threading.Thread(target=owner, daemon=True).start()
    try:
        fed = fednb.connect([live.url], token=alice_token)
        fit = fednb.glm(LOGISTIC, data=fed.dataset("patients"), family="binomial")
        assert fit.converged and len(approvals) == 1
        d = live.domain()
        entries = [e for e in d.audit_entries() if e.object_id == approvals[0]]
        actions = [e.action for e in entries]
        assert actions.count("submit") == 1 and actions.count("approve") == 1
        assert actions.count("round") == fit.rounds == actions.count("release") and actions[-1] == "finish"
        assert all(re.fullmatch("[0-9a-f]{64}", e.payload["inputs_sha256"]) for e in entries if e.action == "round")
        assert d.request(approvals[0]).status == "done"
        d.close()
        fed.close()
    finally:
        live.server.stop()
