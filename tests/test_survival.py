"""Federated survival analysis through real domain servers: parity with lifelines on the binned rows,
and what a hostile analyst can and cannot learn (small groups suppressed, sparse intervals merged)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter  # the test extra: parity is checked, never skipped
from lifelines.statistics import multivariate_logrank_test

import fednb
from fednb.demo import data
from fednb.partial_likelihood import intervals
from tests.conftest import live_domains

RTOL = 1e-6
COX = "followup_days + died ~ age + C(sex) + smoker + diabetes"


def binned(frame: pd.DataFrame, times: list[float], duration: str = "followup_days", event: str = "died"):
    """The rows as the domains see them on grid ``times``: durations at the end of their interval,
    censored just after the last point when beyond it."""
    grid = np.asarray(times, dtype=float)
    idx = intervals(frame[duration].to_numpy(float), grid)
    inside = idx < len(grid)
    return frame.assign(**{duration: np.where(inside, grid[np.minimum(idx, len(grid) - 1)], grid[-1] + 1),
                           event: np.where(inside, frame[event], 0)})


def lifelines_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's columns as lifelines wants them (named like fednb's design columns)."""
    return pd.DataFrame({"followup_days": frame["followup_days"], "died": frame["died"], "age": frame["age"],
                         "C(sex)[T.M]": (frame["sex"] == "M").astype(int), "smoker": frame["smoker"].astype(int),
                         "diabetes": frame["diabetes"].astype(int)})


def max_rel(ours: pd.Series, ref: pd.Series) -> float:
    assert sorted(ours.index) == sorted(ref.index)
    return float(np.max(np.abs(ours[ref.index].to_numpy() - ref.to_numpy()) / np.abs(ref.to_numpy())))


# -- parity with a pooled analysis ------------------------------------------------------------------

def test_kaplan_meier_equals_lifelines_at_every_grid_point(patients, truth):
    km = patients.kaplan_meier("followup_days", "died", time_grid=20)
    assert km.groups == ["all"] and km.n["all"] == len(truth)
    times = list(km.table["time"])
    assert len(times) >= 10  # 2000 patients: most of the 20 points survive the cell rule
    b = binned(truth, times)
    ref = KaplanMeierFitter().fit(b["followup_days"], b["died"])
    assert np.abs(km.table["survival"].to_numpy() - ref.survival_function_at_times(times).to_numpy()).max() < 1e-12
    band = ref.confidence_interval_.loc[times].to_numpy()
    assert np.abs(km.table[["lower", "upper"]].to_numpy() - band).max() < 1e-12
    at_risk = ref.event_table.loc[times, "at_risk"].to_numpy()
    assert (km.table["at_risk"].to_numpy() == at_risk).all()


def test_curves_by_group_equal_lifelines_per_group(patients, truth):
    km = patients.kaplan_meier("followup_days", "died", by="sex", time_grid=15)
    assert sorted(km.groups) == ["F", "M"]
    for g in km.groups:
        times = list(km.survival(g).index)
        b = binned(truth[truth.sex == g], times)
        ref = KaplanMeierFitter().fit(b["followup_days"], b["died"]).survival_function_at_times(times)
        assert np.abs(km.survival(g).to_numpy() - ref.to_numpy()).max() < 1e-12


def test_logrank_equals_lifelines_on_the_binned_rows(patients, truth):
    test = patients.logrank("followup_days", "died", by="smoker", time_grid=15)
    b = binned(truth, test.grid)
    ref = multivariate_logrank_test(b["followup_days"], b["smoker"], b["died"])
    assert test.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert test.p_value == pytest.approx(ref.p_value, rel=1e-8) and test.df == 1
    assert test.p_value < 1e-6  # smokers die sooner in the generating model
    assert int(test.table["observed"].sum()) == int(b["died"].sum())


def test_cox_efron_equals_lifelines_on_the_binned_rows(patients, truth):
    fit = fednb.coxph(COX, data=patients, time_grid=30)
    assert fit.converged and fit.ties == "efron" and fit.nobs == len(truth)
    ref = CoxPHFitter().fit(binned(lifelines_rows(truth), fit.grid), "followup_days", "died",
                            fit_options={"precision": 1e-12})
    assert max_rel(fit.params, ref.params_) < RTOL
    assert max_rel(fit.bse, ref.standard_errors_) < RTOL
    assert fit.loglik == pytest.approx(ref.log_likelihood_, rel=1e-10)
    lr = fit.likelihood_ratio_test
    ref_lr = ref.log_likelihood_ratio_test()
    assert lr["statistic"] == pytest.approx(ref_lr.test_statistic, rel=1e-8) and lr["df"] == ref_lr.degrees_freedom
    summary = fit.summary
    assert np.allclose(summary["exp(coef)"], np.exp(fit.params)) and (summary["p"] < 0.05).all()
    assert any("concordance" in n for n in fit.notes) and any("binned" in n for n in fit.notes)


def test_cox_breslow_equals_statsmodels_on_the_binned_rows(patients, truth):
    import statsmodels.api as sm

    fit = fednb.coxph(COX, data=patients, ties="breslow", time_grid=30)
    b = binned(lifelines_rows(truth), fit.grid)
    cols = list(fit.params.index)
    ref = sm.PHReg(b["followup_days"], b[cols].astype(float), status=b["died"], ties="breslow").fit(tol=1e-12)
    assert max_rel(fit.params, pd.Series(ref.params, index=cols)) < RTOL
    assert max_rel(fit.bse, pd.Series(ref.bse, index=cols)) < RTOL


def test_cox_stratified_by_domain_uses_exact_times(patients, hospitals):
    fit = fednb.coxph(COX, data=patients, strata="domain")
    rows = pd.concat([lifelines_rows(d.frame).assign(domain=d.name) for d in hospitals], ignore_index=True)
    ref = CoxPHFitter().fit(rows, "followup_days", "died", strata=["domain"], fit_options={"precision": 1e-12})
    assert fit.grid is None and max_rel(fit.params, ref.params_) < RTOL and max_rel(fit.bse, ref.standard_errors_) < RTOL
    # and it finds the model that generated the data
    ci = fit.conf_int(0.001)
    for name, true in data.SURVIVAL_MODEL.items():
        assert ci.loc[name, "lower"] < true < ci.loc[name, "upper"], name


# -- what a hostile analyst gets --------------------------------------------------------------------

def ward_clinic(name: str, seed: int, burns: int, icu: int = 0) -> pd.DataFrame:
    """A hospital with a ward column; 'burns' has ``burns`` patients (public at >= 5, under the
    minimum cohort of 10 on ward-a), 'icu' has ``icu`` (too few to be published at all)."""
    frame = data.hospital(name)
    rng = np.random.default_rng(seed)
    ward = rng.choice(["cardio", "general"], len(frame))
    ward[:burns] = "burns"
    ward[burns:burns + icu] = "icu"
    return frame.assign(ward=ward)


@pytest.fixture(scope="module")
def wards(tmp_path_factory, alice_token):
    frames = {"ward-a": ward_clinic("hospital-a", 5, burns=7, icu=3), "ward-b": ward_clinic("hospital-b", 6, burns=40)}
    with live_domains(tmp_path_factory.mktemp("wards"), frames, alice_token) as live:
        fed = fednb.connect([d.url for d in live], token=alice_token)
        yield live, fed.dataset("patients")
        fed.close()


def test_a_small_groups_curve_is_suppressed_with_the_reason(wards):
    live, ds = wards
    km = ds.kaplan_meier("followup_days", "died", by="ward", time_grid=10)
    reasons = [n for n in km.notes if n.startswith("ward-a:")]
    assert reasons and "'burns'" in reasons[0] and "fewer than 10 rows" in reasons[0]
    # what ward-a actually sent over HTTP: no count at all for its 7 burns patients, and a total without them
    sent = km.request.raw_results()["ward-a"]
    burns = next(g for g in sent["groups"] if g["level"] == "burns")
    assert set(burns) == {"level", "suppressed"}
    # the 3 'icu' patients (a level too rare to publish) form '(other)', suppressed as well
    other = next(g for g in sent["groups"] if g["level"] == "(other)")
    assert set(other) == {"level", "suppressed"}
    assert sent["n"] == len(live[0].frame) - 7 - 3
    # the pooled curve of 'burns' is ward-b's alone, and says so
    assert km.n["burns"] == 40 and "burns" in km.groups
    assert "ward-a" in repr(km) and "fewer than 10 rows" in repr(km)


def test_sparse_intervals_are_merged_never_released_small(wards):
    """A grid of 500 points aimed at single patients' times: every count released is 0 or >= 5."""
    live, ds = wards
    frame = live[0].frame
    times = np.sort(frame["followup_days"].unique())[:250].astype(float)
    hostile = sorted({*times, *(times - 0.5)})[:500]
    req = ds._builtin("kaplan_meier", {"duration": "followup_days", "event": "died", "time_grid": hostile,
                                       "by": "ward"}, None, 60, "kaplan_meier on a hostile grid")
    released = 0
    for result in req.raw_results().values():
        for g in result["groups"]:
            for count in g.get("events", []) + g.get("censored", []):
                assert count == 0 or count >= 5, g
                released += count > 0
            if "points" in g and g["n"]:
                beyond = g["n"] - sum(g["events"]) - sum(g["censored"])
                assert beyond == 0 or beyond >= 5
    assert released > 0
    km = ds.kaplan_meier("followup_days", "died", time_grid=hostile)
    assert any("time points asked for" in n for n in km.notes)


def test_too_few_rows_is_blocked_everywhere_with_the_reason(patients):
    with pytest.raises(fednb.NotEnoughDomains) as err:
        patients.kaplan_meier("followup_days", "died", where="age >= 94")
    assert set(err.value.problems) == {"hospital-a", "hospital-b"}
    assert all("minimum cohort" in why for why in err.value.problems.values())


def test_cox_keeps_a_large_risk_set_behind_every_released_interval(wards):
    """At β = 0, S0 of an interval is its risk set's size: each must hold rows_per_value (10) rows per
    value released for it, so late intervals with few patients left are merged away."""
    from fednb.domain.run.builtins.survival import values_per_interval

    live, ds = wards
    grid = [float(x) for x in range(60, 1861, 60)]
    body = {"dataset": "patients", "kind": "builtin", "name": "coxph", "description": "risk sets at zero",
            "args": {"formula": "followup_days ~ age + smoker", "event": "died", "time_grid": grid},
            "limits": {"max_rounds": 2}}
    # an iterative built-in answers in rounds: ask round 1 at β = 0 over HTTP as the fit does
    from fednb.client.http import run

    part = ds.fed.send(ds.clients, body).wait_decided(30)[0]
    state = run(part.client.post_inputs_round(part.id, 1, {}, wait=30))
    result = state["result"]
    needed = 10 * values_per_interval(2, "efron")
    assert min(result["s0"]) >= needed and len(result["points"]) < len(grid)
    assert all(d == 0 or d >= 5 for d in result["d"])
    run(part.client.finish(part.id))


def test_a_hidden_cox_level_named_in_levels_answers_as_a_made_up_name(wards):
    # 'icu' (3 rows on ward-a) is not in the listing: naming it must answer exactly as a name that does
    # not exist (an empty column), or levels= would be an oracle for hidden rare categories
    live, ds = wards
    ward_a = ds.fed.dataset("patients", domains=["ward-a"])
    for options in ({"strata": "domain"}, {"time_grid": 10}):
        answers = []
        for guess in ("icu", "zzz"):
            with pytest.raises(fednb.FednbError) as err:
                fednb.coxph("followup_days + died ~ age + C(ward)", data=ward_a,
                            levels={"ward": ["cardio", guess, "general"]}, **options)
            answers.append((type(err.value), str(err.value).replace(guess, "GUESS")))
        assert answers[0] == answers[1] and "singular" in answers[0][1]


def test_bad_arguments_are_clear(patients, hospitals, alice_token):
    with pytest.raises(fednb.FednbError, match="two columns: duration \\+ event"):
        fednb.coxph("followup_days ~ age", data=patients)
    with pytest.raises(fednb.FednbError, match="ties must be one of"):
        fednb.coxph(COX, data=patients, ties="exact")
    with pytest.raises(fednb.FednbError, match="strata= may be 'domain'"):
        fednb.coxph(COX, data=patients, strata="sex")
    with pytest.raises(fednb.FednbError, match="between 1 and 500"):
        patients.kaplan_meier("followup_days", "died", time_grid=10_000)
    with pytest.raises(fednb.FednbError, match="compares groups"):
        patients.logrank("followup_days", "died", by="")
    from fednb.client.http import DomainClient, run

    client = DomainClient(hospitals[0].url, alice_token)
    for args, why in [({"duration": "followup_days", "event": "died", "time_grid": [5, 3]}, "strictly increasing"),
                      ({"duration": "followup_days", "event": "died", "time_grid": list(range(1, 600))}, "at most 500"),
                      ({"duration": "followup_days", "event": "died", "time_grid": [1], "by": "x" * 5, "eval": 1},
                       "Extra inputs")]:
        body = {"dataset": "patients", "kind": "builtin", "name": "kaplan_meier", "args": args}
        with pytest.raises(fednb.DomainError, match=why) as err:
            run(client.post_request(body))
        assert err.value.status in (400, 422)
    run(client.aclose())
    # an event column that is not 0/1 is refused on the domain, in words
    req = patients._builtin("kaplan_meier", {"duration": "followup_days", "event": "age", "time_grid": [100.0]},
                            None, 60)
    assert all("must be 0/1 or boolean" in why for why in req.problems.values())


def test_noisy_curves_spend_the_budget_and_follow_the_truth(wards):
    live, ds = wards
    grid = [365.0, 730.0, 1095.0, 1460.0, 1825.0]
    km = ds.kaplan_meier("followup_days", "died", by="smoker", time_grid=grid, epsilon=0.5)
    assert any("noise added by ward-a (epsilon 0.5" in n for n in km.notes)
    # the domains sent the whole grid for every group, "(other)" included: no merging, no suppression
    for result in km.request.raw_results().values():
        assert [g["level"] for g in result["groups"]] == [False, True, "(other)"]
        assert all(len(g["events"]) == len(grid) for g in result["groups"]) and result["dp"]["epsilon"] == 0.5
    spent = ds.budget().set_index("domain")["spent_epsilon"]
    assert (spent >= 0.5).all()
    truth = pd.concat([d.frame for d in live], ignore_index=True)
    for g in (False, True):
        rows = binned(truth[truth.smoker == g], grid)
        fit = KaplanMeierFitter().fit(rows["followup_days"], rows["died"])
        ref = fit.survival_function_at_times(grid).to_numpy()
        # the noise's own spread, by the delta method: S_k * sqrt(sum_j (sigma_d / n_j)^2), with sigma_d
        # the std of an event count summed over the two wards; the at-risk counts are noisy too (half as
        # much again, at most, here), and six of these make a failure a one-in-a-million event
        sigma_d = np.sqrt(2) * 2.83
        at_risk = fit.event_table.loc[grid, "at_risk"].to_numpy(float)
        spread = 1.5 * ref * np.sqrt(np.cumsum((sigma_d / at_risk) ** 2))
        error = np.abs(km.survival(g).to_numpy() - ref)
        assert (error <= 6 * spread).all(), (error, spread)
        # and where at least 200 are at risk, that bound keeps the noisy curve within 0.12 of the truth
        assert 6 * spread[at_risk >= 200].max() < 0.12


def test_noise_is_refused_where_it_is_not_sound(patients):
    with pytest.raises(fednb.FednbError, match="p-value would ignore the noise"):
        patients.logrank("followup_days", "died", by="smoker", epsilon=1.0)
    with pytest.raises(fednb.FednbError, match="no bounded sensitivity"):
        fednb.coxph(COX, data=patients, epsilon=1.0)


def test_survival_builtins_are_auto_approved_and_audited(hospitals, patients):
    from fednb.models import BUILTINS

    assert {"kaplan_meier", "logrank", "coxph"} <= set(BUILTINS)
    policy = (hospitals[0].path / "policy.toml").read_text()
    line = next(line for line in policy.splitlines() if line.startswith("auto_approve"))
    assert '"kaplan_meier"' in line and '"logrank"' in line and '"coxph"' in line
    km = patients.kaplan_meier("followup_days", "died", time_grid=5)
    request_id = km.request.parts[0].id
    d = hospitals[0].domain()
    try:
        rows = d.store.query("SELECT action, payload_json FROM audit WHERE object_id = ?", (request_id,))
    finally:
        d.close()
    actions = [r["action"] for r in rows]
    assert len(actions) >= 2, actions  # submitted, approved by policy, released: each a row of the chain
    assert any("kaplan_meier" in r["payload_json"] for r in rows)


# -- what the analyst sees --------------------------------------------------------------------------

def test_the_km_plot_has_bands_and_a_number_at_risk_table(patients):
    km = patients.kaplan_meier("followup_days", "died", by="sex", time_grid=12)
    fig = km.plot()
    curves = [tr for tr in fig.data if tr.mode != "text" and tr.showlegend is not False]
    assert sorted(tr.name for tr in curves) == ["sex = F", "sex = M"]
    assert sum(tr.fill == "tonexty" for tr in fig.data) == 2  # one band per group
    table = [tr for tr in fig.data if tr.mode == "text"]
    assert len(table) == 2 and all(tr.yaxis == "y2" for tr in table)
    first = [int(x) for x in table[0].text][0]
    assert first == km.n[table[0].y[0].removeprefix("sex = ")]  # everyone is at risk at time 0
    assert fig.layout.yaxis2.title.text == "Number at risk"


def test_the_forest_plot_and_spanish_labels(patients):
    fit = fednb.coxph(COX, data=patients, strata="domain")
    fednb.set_language("es")
    try:
        fig = fit.plot()
        km_fig = patients.kaplan_meier("followup_days", "died", time_grid=5).plot()
    finally:
        fednb.set_language(None)
    assert fig.layout.xaxis.type == "log" and list(fig.data[0].y)[::-1] == list(fit.params.index)
    assert np.allclose(fig.data[0].x[::-1], fit.hazard_ratios.to_numpy())
    assert "Razón de riesgo" in fig.layout.xaxis.title.text
    assert km_fig.layout.yaxis2.title.text == "Número en riesgo"
