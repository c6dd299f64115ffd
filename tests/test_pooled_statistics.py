"""Built-in statistics through real domain servers pool exactly to those of the concatenated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fednb


def test_listing_shows_metadata_with_rounded_counts(fed, hospitals):
    listing = fed.datasets
    assert set(listing["domain"]) == {d.name for d in hospitals}
    assert list(listing.columns) == ["domain", "dataset", "rows", "columns", "description"]
    assert (listing["rows"] % 10 == 0).all()
    assert (listing["columns"] == len(hospitals[0].frame.columns)).all()


def test_mock_has_schema_but_no_real_rows(patients, hospitals):
    mock = patients.mock
    assert set(mock["domain"]) == {"hospital-a", "hospital-b"}
    for d in hospitals:
        body = mock[mock["domain"] == d.name].drop(columns="domain")
        assert list(body.columns) == list(d.frame.columns)
        assert body.dtypes.astype(str).to_dict() == d.frame.dtypes.astype(str).to_dict()
        copied = body.merge(d.frame.drop_duplicates(), how="inner", on=list(d.frame.columns))
        assert len(copied) == 0, f"a mock row of {d.name} equals one of its real rows"
        # marginals look alike: rates within a few points, means within a few units
        assert abs(body.readmitted.mean() - d.frame.readmitted.mean()) < 0.05
        assert abs(body.age.mean() - d.frame.age.mean()) < 3


def test_count_sum_mean_variance_are_exact(patients, truth):
    assert patients.count().value == len(truth)
    assert patients.sum("systolic_bp").value == pytest.approx(truth.systolic_bp.sum(), rel=1e-12)
    assert patients.mean("age").value == pytest.approx(truth.age.mean(), rel=1e-12)
    assert patients.var("bmi").value == pytest.approx(truth.bmi.var(), rel=1e-10)
    assert patients.std("bmi").value == pytest.approx(truth.bmi.std(), rel=1e-10)
    by = patients.mean("age").by_domain
    assert list(by.columns) == ["domain", "n", "mean"] and len(by) == 2


def test_filters_are_exact(patients, truth):
    sel = truth[(truth.age > 60) & (truth.sex == "F")]
    assert patients.count(where="age > 60 and sex == 'F'").value == len(sel)
    assert patients.mean("bmi", where={"sex": "F"}).value == pytest.approx(truth[truth.sex == "F"].bmi.mean())
    assert patients.count(where=[("smoker", "==", True), ("age", "<=", 50)]).value == \
        len(truth[truth.smoker & (truth.age <= 50)])


def test_a_domain_blocked_gives_a_partial_result_naming_it(patients, hospitals):
    a, b = (d.frame for d in hospitals)
    young_smokers = "smoker == True and age <= 40"
    assert len(b.query(young_smokers)) < 10 <= len(a.query(young_smokers))
    partial = patients.count(where=young_smokers)
    assert partial.value == len(a.query(young_smokers))
    assert list(partial.missing) == ["hospital-b"] and "minimum cohort" in partial.missing["hospital-b"]
    assert "missing hospital-b" in repr(partial)
    with pytest.raises(fednb.NotEnoughDomains, match="hospital-b: blocked"):
        patients.count(where=young_smokers, min_domains=2)


def test_crosstab_equals_the_pooled_table(patients, truth):
    ct = patients.crosstab("sex", "readmitted").value
    expected = pd.crosstab(truth.sex, truth.readmitted)
    assert ct.to_numpy(dtype=float).tolist() == expected.to_numpy(dtype=float).tolist()


def test_histogram_counts_and_suppression(patients, truth):
    edges = [15, 20, 25, 30, 35, 40]
    h = patients.histogram("bmi", edges).value
    inner, _ = np.histogram(truth.bmi, bins=edges)
    shown = h["count"].iloc[1:-1]
    for got, want in zip(shown, inner):
        assert pd.isna(got) or got == want
    # every domain's small cells (0 < n < 5) must be hidden, with a complement
    for d in patients.histogram("bmi", edges).request.raw_results().values():
        cells = [d["below"], *d["counts"], d["above"]]
        assert sum(c is None for c in cells) != 1


def test_quantiles_exact_for_integers_and_bounded_otherwise(patients, truth):
    qs = [0.1, 0.25, 0.5, 0.75, 0.9]
    ages = patients.quantile("age", qs)
    true_ages = truth.age.quantile(qs).to_numpy()
    bounds = np.array([ages.value.attrs["error_bound"][q] for q in qs])
    assert np.all(np.abs(ages.value.to_numpy() - true_ages) <= bounds + 1e-9)
    assert (bounds == 0).sum() >= 3, "integer ages should mostly come out exact"
    bmi = patients.quantile("bmi", [0.5])
    err = bmi.value if isinstance(bmi.value, float) else bmi.value.iloc[0]
    assert abs(err - truth.bmi.median()) <= 0.5


def test_unknown_column_is_a_clear_error(patients):
    with pytest.raises(fednb.FednbError, match="no column"):
        patients.mean("cholesterol")


def test_small_cohort_is_blocked_with_reason(patients):
    with pytest.raises(fednb.NotEnoughDomains) as err:
        patients.mean("bmi", where="age >= 94 and smoker == True")
    assert all("blocked by disclosure control" in why and "minimum cohort" in why
               for why in err.value.problems.values())


def test_bad_where_is_refused_before_sending(patients):
    with pytest.raises(fednb.FednbError, match="cannot read the condition"):
        patients.count(where="age ~ 3")
    with pytest.raises(fednb.FednbError, match="not a number"):
        patients.count(where="age > __import__('os')")
