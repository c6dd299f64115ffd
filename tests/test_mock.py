"""The mock synthesizer and its report on awkward data: exact length and schema, no real record
copied (over many seeds, on coarse data too), rare values and extremes never shown, IDs never
reproduced, relationships kept by tier 1 and measured by the report."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from fednb.demo import data
from fednb.domain.data import mock_review
from fednb.domain.data.mock import canonical_hashes, make_mock, mock_rows, rare_matches
from fednb.domain.data.mock_report import build_report
from fednb.domain.review.policy import Policy, render_template
from fednb.errors import PolicyError

K = 5


def _awkward() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    n = 400
    frames = {
        "all_categorical": pd.DataFrame({c: rng.choice(["a", "b"], n) for c in "xyz"}),
        "tiny": pd.DataFrame({"age": rng.integers(20, 80, 30), "sex": rng.choice(["F", "M"], 30),
                              "score": rng.normal(size=30).round(2)}),
        "missing": pd.DataFrame({"x": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
                                 "code": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 3, n)), dtype="Int64"),
                                 "city": np.where(rng.random(n) < 0.15, None, rng.choice(["Lima", "Cusco", "Puno"], n))}),
        "dates": pd.DataFrame({"admitted": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), "D"),
                               "seen_at": pd.to_datetime("2021-03-01") + pd.to_timedelta(rng.integers(0, 10**7, n), "s"),
                               "ward": rng.choice(["A", "B", "C"], n)}),
        "ids": pd.DataFrame({"patient_id": [f"P{100000 + i}" for i in range(n)], "age": rng.integers(18, 90, n)}),
        "skewed": pd.DataFrame({"income": np.round(rng.lognormal(10, 1.5, n), 2), "visits": rng.poisson(0.3, n) * 7,
                                "rare": np.where(np.arange(n) < 3, "unicorn", rng.choice(["x", "y"], n))}),
        "hospital": data.hospital("hospital-a"),
        "odd_dtypes": pd.DataFrame({
            "at": pd.date_range("2021-03-27", periods=n, freq="h", tz="Europe/Madrid"),  # across a DST change
            "grade": pd.Categorical(rng.choice(["lo", "mid", "hi", "rare"], n, p=[.45, .45, .09, .01]),
                                    categories=["lo", "mid", "hi", "rare"], ordered=True),
            "flag": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
            "constant": [3] * n, "empty": [np.nan] * n, "note": [f"free text {i}" for i in range(n)]}),
        "two_rows": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    }
    return frames


AWKWARD = _awkward()


def _same_schema(real: pd.DataFrame, mock: pd.DataFrame) -> None:
    assert list(mock.columns) == list(real.columns)
    for c in real.columns:
        a, b = real[c].dtype, mock[c].dtype
        same_family = (str(a) == str(b) or (pd.api.types.is_integer_dtype(a) and pd.api.types.is_integer_dtype(b))
                       or (pd.api.types.is_bool_dtype(a) and pd.api.types.is_bool_dtype(b))
                       or (pd.api.types.is_float_dtype(a) and pd.api.types.is_float_dtype(b))
                       or (pd.api.types.is_datetime64_any_dtype(a) and pd.api.types.is_datetime64_any_dtype(b))
                       or (pd.api.types.is_string_dtype(a) and pd.api.types.is_string_dtype(b)))
        assert same_family, f"column {c}: real {a}, mock {b}"


@pytest.mark.parametrize("tier", [0, 1])
@pytest.mark.parametrize("name", list(AWKWARD))
def test_mock_has_the_requested_rows_the_schema_and_no_rare_real_record(name, tier):
    real = AWKWARD[name]
    for rows in (10, 137, 500):
        mock = make_mock(real, min_cell_count=K, rows=rows, seed=rows, tier=tier)
        assert len(mock) == rows
        _same_schema(real, mock)
        assert not rare_matches(real, mock, K).any(), "a mock row equals a real record shared by fewer than k rows"


@pytest.mark.parametrize("tier", [0, 1])
def test_no_real_row_is_ever_copied_across_many_seeds(tier):
    """Every real row of this data is unique (a float column), so "no real row" means no equality at all."""
    real = AWKWARD["hospital"]
    real_rows = set(canonical_hashes(real))
    for seed in range(40):
        mock = make_mock(real, min_cell_count=K, rows=500, seed=seed, tier=tier)
        assert not set(canonical_hashes(mock)) & real_rows, f"seed {seed} copied a real row"


@pytest.mark.parametrize("tier", [0, 1])
def test_coarse_categorical_data_gives_a_full_mock_of_common_combinations_only(tier):
    """Every combination of 3 binary columns is a real row; each is shared by ~50 people, so it is a
    group the cell rule would release as a count, not a person. The mock is full (it used to be empty)."""
    real = AWKWARD["all_categorical"]
    counts = pd.Series(canonical_hashes(real)).value_counts()
    for seed in range(40):
        mock = make_mock(real, min_cell_count=K, rows=300, seed=seed, tier=tier)
        assert len(mock) == 300 and mock.notna().all().all()
        assert counts.reindex(canonical_hashes(mock)).min() >= K


@pytest.mark.parametrize("tier", [0, 1])
def test_coarse_data_where_every_combination_is_a_rare_record_copies_none(tier):
    """12 people, 4 combinations, 3 people each (< k): every possible mock row of the revealed levels
    is a rare real record. The mock still has its rows, and none equals a real row."""
    real = pd.DataFrame({"a": list("ab") * 6, "b": list("aabb") * 3})
    real_rows = set(canonical_hashes(real))
    for seed in range(20):
        mock = make_mock(real, min_cell_count=K, rows=20, seed=seed, tier=tier)
        assert len(mock) == 20 and list(mock.columns) == ["a", "b"]
        assert not set(canonical_hashes(mock)) & real_rows


@pytest.mark.parametrize("tier", [0, 1])
def test_identifiers_rare_levels_and_extremes_are_never_shown(tier):
    ids, skewed = AWKWARD["ids"], AWKWARD["skewed"]
    mock = make_mock(ids, min_cell_count=K, rows=500, seed=1, tier=tier)
    assert not set(mock["patient_id"]) & set(ids["patient_id"])
    mock = make_mock(skewed, min_cell_count=K, rows=500, seed=1, tier=tier)
    assert "unicorn" not in set(mock["rare"])
    top = np.sort(skewed["income"].to_numpy())[-K:]
    assert mock["income"].max() < top.max(), "the largest real income was shown"
    assert not set(mock["income"]) & set(top)


def test_odd_dtypes_keep_their_kind():
    real = AWKWARD["odd_dtypes"]
    mock = make_mock(real, min_cell_count=K, rows=300, seed=4, tier=1)
    assert str(mock["at"].dt.tz) == "Europe/Madrid" and mock["grade"].cat.ordered
    assert "rare" not in set(mock["grade"].dropna()) and "rare" not in list(mock["grade"].cat.categories)
    assert set(mock["constant"]) == {3} and mock["empty"].isna().all()
    assert not set(mock["note"]) & set(real["note"])


def test_dates_and_missing_values_survive_in_kind():
    mock = make_mock(AWKWARD["dates"], min_cell_count=K, rows=200, seed=3, tier=1)
    assert mock["admitted"].between(pd.Timestamp("2019-12-01"), pd.Timestamp("2022-08-01")).all()
    mock = make_mock(AWKWARD["missing"], min_cell_count=K, rows=400, seed=3, tier=1)
    assert 0.1 < mock["x"].isna().mean() < 0.3 and mock["city"].isna().any()


def test_one_missing_value_is_not_shown_in_the_mock():
    real = AWKWARD["hospital"].copy()
    real.loc[5, "bmi"] = np.nan  # one patient lacks a bmi
    for seed in range(10):
        assert make_mock(real, min_cell_count=K, rows=500, seed=seed)["bmi"].notna().all()


def test_the_mock_length_is_the_listings_rounded_count_not_the_exact_one():
    assert {mock_rows(n, 10, 500) for n in (41, 42, 44)} == {40}
    assert mock_rows(3, 10, 500) == 10 and mock_rows(123_456, 10, 500) == 500
    policy = Policy.model_validate({"domain": {"name": "d"}})
    lengths = {len(mock_review.build(AWKWARD["hospital"].head(n), "p", policy, seed=0)[0]) for n in (41, 43, 44)}
    assert lengths == {40}


def _correlated(n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x.round(3), "y": (2 * x + rng.normal(scale=0.5, size=n)).round(3),
                         "group": np.where(x + rng.normal(scale=0.5, size=n) > 0, "high", "low")})


def test_tier_one_keeps_relationships_tier_zero_does_not_and_the_report_says_so():
    real = _correlated()
    reports = {}
    for tier in (0, 1):
        policy = Policy.model_validate({"domain": {"name": "d"}, "mock": {"tier": tier}})
        mock, reports[tier] = mock_review.build(real, "p", policy, seed=2)
        r = np.corrcoef(mock["x"], mock["y"])[0, 1]
        assert (r > 0.9) if tier == 1 else (abs(r) < 0.15)
    u0, u1 = reports[0]["utility"], reports[1]["utility"]
    assert u1["correlation_error"]["max"] < 0.1 < 0.5 < u0["correlation_error"]["max"]
    assert u1["pmse_ratio"] < 3 < 10 < u0["pmse_ratio"]
    for report in reports.values():
        assert report["risk"]["exact_match_rate"] == 0 and report["risk"]["rare_match_rate"] == 0
        assert 0.4 < report["risk"]["closer_to_real"] < 0.6


def test_the_risk_report_catches_a_mock_that_memorises_its_rows():
    """A "synthesizer" that returns its training rows slightly blurred must score as memorising and be withheld."""
    real = _correlated()

    def memorising(train: pd.DataFrame, rows: int) -> pd.DataFrame:
        out = train.sample(rows, replace=True, random_state=0).reset_index(drop=True)
        return out.assign(x=out["x"] + 0.001)

    report = build_report(real, make_mock(real, min_cell_count=K, rows=500), memorising, k=K, tier=1)
    assert report["risk"]["closer_to_real"] > 0.9
    state = mock_review.initial_state(report)
    policy = Policy.model_validate({"domain": {"name": "d"}})
    assert "closer to the real rows than the policy allows" in mock_review.refusal({**state, "status": "approved"}, policy, "p")


def test_rare_category_exposure_is_zero_and_reported():
    real = AWKWARD["skewed"]
    policy = Policy.model_validate({"domain": {"name": "d"}, "mock": {"tier": 1}})
    _, report = mock_review.build(real, "p", policy, seed=0)
    assert report["risk"]["rare_category_exposure"] == {"rare_level_values": 0, "values_outside_public_range": 0}
    assert set(report["utility"]["marginal_distance"]) == set(real.columns)


def test_small_data_says_the_holdout_comparison_is_not_a_measurement():
    policy = Policy.model_validate({"domain": {"name": "d"}})
    _, report = mock_review.build(AWKWARD["tiny"], "p", policy, seed=0)
    assert report["risk"]["closer_to_real"] is None and "too few rows" in report["risk"]["dcr_note"]


def test_the_policy_template_documents_and_validates_the_mock_settings(tmp_path):
    text = render_template("d")
    policy = Policy.model_validate(tomllib.loads(text))
    assert policy.mock.tier == 0 and policy.mock.serve_unreviewed == "tier-0" and policy.mock.tier_of("x") == 0
    assert Policy.model_validate({"domain": {"name": "d"}, "mock": {"tiers": {"p": 1}}}).mock.tier_of("p") == 1
    from fednb.domain.review.policy import load_policy

    for bad in ("tier = 2", 'serve_unreviewed = "all"', "max_closer_to_real = 0.4", "rows = 0"):
        key = bad.split(" =")[0]
        lines = [bad if line.startswith(f"{key} =") and "[mock]" in text[:text.index(line)] else line
                 for line in text.splitlines()]
        (tmp_path / "policy.toml").write_text("\n".join(lines))
        with pytest.raises(PolicyError, match=key):
            load_policy(tmp_path / "policy.toml")


def test_a_mock_made_before_mocks_were_measured_is_treated_as_unreviewed_tier_zero():
    lenient = Policy.model_validate({"domain": {"name": "d"}})
    strict = Policy.model_validate({"domain": {"name": "d"}, "mock": {"serve_unreviewed": "none"}})
    assert mock_review.refusal(None, lenient, "p") is None
    assert "add the dataset again" in mock_review.refusal(None, strict, "p")


def test_a_placeholder_column_does_not_hide_a_copied_record():
    """Free text makes every mock row differ from every real row; the guard must match on the other
    columns. Here 12 people share (c, d) and three people each have (a, b), (a, d), (c, b): those
    three combinations are rare records and must never appear in the mock."""
    pairs = [("c", "d")] * 12 + [("a", "b")] * 3 + [("a", "d")] * 3 + [("c", "b")] * 3
    real = pd.DataFrame({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs],
                         "note": [f"free text {i}" for i in range(len(pairs))]})
    for tier in (0, 1):
        for seed in range(20):
            mock = make_mock(real, min_cell_count=K, rows=100, seed=seed, tier=tier)
            shown = set(zip(mock["a"], mock["b"]))
            assert not shown & {("a", "b"), ("a", "d"), ("c", "b")}, (tier, seed)
            assert not rare_matches(real, mock, K).any()
