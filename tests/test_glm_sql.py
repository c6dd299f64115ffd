"""The GLM's IRLS step and disclosure checks in the dataset's engine: the same numbers and decisions as
the in-memory path (formulaic's design matrix), statsmodels' fit when iterated, and through a real
domain server a GLM over more rows than a worker may hold, values that stay values, and coefficients
chosen to overflow."""

from __future__ import annotations

import functools

import httpx
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as statsmodels
import statsmodels.formula.api as smf

from fednb.domain.data.engines import EngineError
from fednb.domain.data.engines.duckdb import ParquetEngine
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run.builtins import glm as glm_builtin
from tests.api_support import auth, builtin_round, released
from tests.conftest import start_live
from tests.engine_support import BothPaths, parquet_engine

PUBLIC = {"ward": ["cardio", "general", "icu"], "smoker": [False, True], "stage": [1, 2, 3]}
RTOL = 1e-9


def clinic(n: int = 600, seed: int = 5) -> pd.DataFrame:
    """Missing values, a nullable boolean, a text category with a hidden rare level, an integer one,
    values where log and 1/x are not finite, and outcomes for each family."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, n)
    bmi = rng.normal(27, 4, n)
    ward = rng.choice(["cardio", "general", "icu"], n, p=[0.3, 0.55, 0.15]).astype(object)
    ward[:3] = "burns"  # hidden: not in the listing's levels
    dose = rng.uniform(-1, 3, n)
    dose[10:14] = 0.0  # log(0), 1/0: dropped as in NumPy
    smoker = pd.array(rng.random(n) < 0.3, dtype="boolean")
    smoker[7::50] = pd.NA
    eta = -3 + 0.03 * age + 0.4 * (ward == "icu") + 0.5 * np.asarray(smoker.fillna(False), dtype=bool)
    frame = pd.DataFrame({
        "age": age, "bmi": bmi, "ward": ward, "dose": dose, "smoker": smoker,
        "stage": rng.integers(1, 4, n),
        "sbp": 100 + 0.4 * age + 0.8 * bmi + rng.normal(0, 8, n),
        "died": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int),
        "visits": rng.poisson(np.exp(0.2 + 0.01 * age)),
    })
    frame.loc[5::31, "bmi"] = np.nan
    return frame


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    frame = clinic()
    with parquet_engine(tmp_path_factory.mktemp("glm-sql"), frame, "256MB") as engine:
        yield frame, engine


PATHS = BothPaths("glm", glm_builtin.GlmArgs, glm_builtin.glm, PUBLIC)
in_memory, in_engine = PATHS.in_memory, PATHS.in_engine


def assert_same(got: dict, expected: dict) -> None:
    assert isinstance(got, dict), got
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if key in ("xtwx", "xtwz"):
            np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=0, err_msg=key)
        elif isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=RTOL, abs=0), key
        else:
            assert got[key] == value, key


def solve(result: dict) -> list[float]:
    p = len(result["columns"])
    a = np.zeros((p, p))
    a[np.triu_indices(p)] = result["xtwx"]
    a = a + np.triu(a, 1).T
    return list(np.linalg.lstsq(a, np.asarray(result["xtwz"]), rcond=None)[0])


FORMULAS = [
    ("sbp ~ age + bmi", "gaussian", {}),
    ("sbp ~ age + bmi + C(ward) + smoker + C(ward):age", "gaussian", {"ward": ["cardio", "general", "icu"]}),
    ("sbp ~ 0 + C(ward) + I(age ** 2) + np.log(dose) + I(1 / dose) + I(-bmi * 2 + 3)", "gaussian",
     {"ward": ["general", "cardio", "icu", "burns"]}),  # a hidden level asked for: an empty column
    ("sbp ~ C(ward) * C(stage) + sqrt(dose) + abs(dose) + log2(age) + log10(age) + exp(dose)", "gaussian",
     {"ward": ["cardio", "general", "icu"], "stage": [1, 2, 3]}),
    ("died ~ age + bmi + C(ward) + smoker", "binomial", {"ward": ["cardio", "general", "icu"]}),
    ("died ~ C(stage):age + I(dose ** -1)", "binomial", {"stage": [2, 1, 3]}),
    ("visits ~ age + C(ward) + I(dose ** 0.5)", "poisson", {"ward": ["cardio", "general", "icu"]}),
    ("visits ~ (age + bmi + dose) ** 2", "poisson", {}),
]


@pytest.mark.parametrize("formula, family, levels", FORMULAS, ids=[f for f, _, _ in FORMULAS])
def test_the_step_in_sql_equals_the_step_in_memory(table, formula, family, levels, monkeypatch):
    frame, engine = table
    args = {"formula": formula, "family": family, "levels": levels,
            "where": [{"column": "age", "op": ">", "value": 25}]}
    expected, expected_evidence = in_memory(frame, args)
    got, evidence = in_engine(engine, args, monkeypatch=monkeypatch)
    assert_same(got, expected)
    assert evidence == expected_evidence  # the same rows for the differencing defence
    step = {"beta": solve(expected)}  # a second round, at coefficients near the fit
    expected, _ = in_memory(frame, args, step)
    got, _ = in_engine(engine, args, step, monkeypatch=monkeypatch)
    assert_same(got, expected)


EXTREMES = [
    ("sbp ~ age", "binomial", None),  # not a 0/1 outcome: the family's error, not an engine's
    ("visits ~ age + bmi", "poisson", [-2000.0, 0.0, 0.0]),  # μ underflows to 0: not finite
    ("visits ~ age + bmi", "poisson", [800.0, 0.0, 0.0]),  # μ overflows: not finite
    ("died ~ age + bmi", "binomial", [-2000.0, 0.0, 0.0]),  # μ clipped to a float's width
    ("died ~ age + bmi", "binomial", [1e300, 1e300, 0.0]),  # η overflows
    ("sbp ~ exp(I(age * 20)) + exp(I(-age * 20))", "gaussian", None),  # exp over- and underflows in a term
]


@pytest.mark.parametrize("formula, family, beta", EXTREMES, ids=[f"{f} {b}" for f, _, b in EXTREMES])
def test_extreme_values_give_the_in_memory_answer(table, formula, family, beta, monkeypatch):
    frame, engine = table
    args = {"formula": formula, "family": family}
    inputs = {} if beta is None else {"beta": beta}
    expected, _ = in_memory(frame, args, inputs)
    got, _ = in_engine(engine, args, inputs, monkeypatch=monkeypatch)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert_same(got, expected)


def test_a_formula_the_sql_design_cannot_express_runs_in_memory_with_the_same_answer(table):
    frame, engine = table
    args = {"formula": "sbp ~ age + log1p(bmi)", "family": "gaussian"}
    got, _ = in_engine(engine, args)
    expected, _ = in_memory(frame, args)
    assert_same(got, expected)
    assert got["columns"] == ["Intercept", "age", "log1p(bmi)"]


@pytest.mark.parametrize("family, outcome", [("binomial", "died"), ("poisson", "visits")])
def test_iterated_steps_reach_statsmodels_fit(table, family, outcome):
    frame, engine = table
    formula = f"{outcome} ~ age + bmi + C(ward)"
    args = {"formula": formula, "family": family, "levels": {"ward": ["cardio", "general", "icu"]}}
    result, _ = in_engine(engine, args)
    for _ in range(30):
        beta = solve(result)
        result, _ = in_engine(engine, args, {"beta": beta})
        if np.allclose(solve(result), beta, rtol=1e-13, atol=0):
            break
    kept = frame[frame["ward"].isin(PUBLIC["ward"])].dropna(subset=["bmi"])
    families = {"binomial": statsmodels.families.Binomial(), "poisson": statsmodels.families.Poisson()}
    ref = smf.glm(formula, kept, family=families[family]).fit(tol=1e-13)
    assert result["n"] == ref.nobs
    np.testing.assert_allclose(solve(result), ref.params[result["columns"]].to_numpy(), rtol=1e-8)
    assert result["deviance"] == pytest.approx(ref.deviance, rel=1e-9)
    assert result["loglik"] == pytest.approx(ref.llf, rel=1e-9)
    assert result["pearson_chi2"] == pytest.approx(ref.pearson_chi2, rel=1e-9)


def attacked() -> pd.DataFrame:
    """Columns that single out a few people, however coded, next to ordinary ones."""
    frame = clinic(300, seed=9)
    frame["one"] = 0
    frame.loc[17, "one"] = 1
    frame["two"] = 0.0
    frame.loc[[17, 18], "two"] = 2.0
    frame["spread"] = 5.0
    frame.loc[[1, 2, 3, 4, 5, 6], "spread"] = [1.0, 2.0, 3.0, 4.0, 6.0, 7.0]  # six rows off the mode: k = 5 passes
    frame["middle"] = 5.0
    frame.loc[[1, 2], "middle"] = [-1.0, 9.0]  # the mode is neither end
    frame["rich"] = 100.0 + frame.index % 7
    frame.loc[40, "rich"] = 1e9
    frame["rare"] = np.where(frame.index < 3, "x", np.where(frame.index % 2, "a", "b"))
    frame["id"] = frame.index
    return frame


DECISIONS = [
    ("sbp ~ age + one", {}, None), ("sbp ~ age + two", {}, None), ("sbp ~ age + two:bmi", {}, None),
    ("sbp ~ age + spread", {}, None), ("sbp ~ age + middle", {}, None), ("one ~ age", {}, None),
    ("sbp ~ age + rich", {}, None), ("sbp ~ C(rare)", {"rare": ["a", "b", "x"]}, None),
    ("sbp ~ age + C(stage)", {"stage": [1, 2, 3]}, None),
    # eight rows, under 2k - 1: the most common value is counted, not found from the k-th values
    ("sbp ~ age + middle", {}, DisclosureSection(min_cohort=3, safe_dof_threshold=1, max_parameters_per_row=1)),
    ("sbp ~ age", {}, DisclosureSection(min_cohort=3, safe_dof_threshold=1, max_parameters_per_row=1)),
]


@pytest.mark.parametrize("formula, levels, rules", DECISIONS, ids=[f"{f} {bool(r)}" for f, _, r in DECISIONS])
def test_the_disclosure_checks_decide_as_in_memory(tmp_path, formula, levels, rules, monkeypatch):
    frame = attacked()
    where = [{"column": "id", "op": "<", "value": 8}] if rules else []
    frame.to_parquet(tmp_path / "data.parquet", index=False)
    engine = ParquetEngine(tmp_path / "data.parquet", memory_limit="128MB", threads=1)
    public = {**PUBLIC, "rare": ["a", "b", "x"]}
    args = {"formula": formula, "family": "gaussian", "levels": levels, "where": where}
    monkeypatch.setitem(PUBLIC, "rare", public["rare"])
    try:
        expected, expected_evidence = in_memory(frame, args, rules=rules)
        got, evidence = in_engine(engine, args, rules=rules, monkeypatch=monkeypatch)
    finally:
        engine.close()
    if isinstance(expected, str):
        assert got == expected
    else:
        assert_same(got, expected)
        assert evidence == expected_evidence


def test_the_attack_columns_are_blocked_and_the_ordinary_ones_pass(tmp_path):
    """The decisions compared above are the interesting ones: refusals where a few people stand out."""
    frame = attacked()
    blocked = {f for f, levels, rules in DECISIONS if isinstance(in_memory(frame, {
        "formula": f, "family": "gaussian", "levels": levels}, rules=rules)[0], str) and not rules}
    assert blocked == {"sbp ~ age + one", "sbp ~ age + two", "sbp ~ age + two:bmi", "one ~ age",
                       "sbp ~ age + middle", "sbp ~ age + rich", "sbp ~ C(rare)"}
    few = DisclosureSection(min_cohort=3, safe_dof_threshold=1, max_parameters_per_row=1)
    where = [{"column": "id", "op": "<", "value": 8}]
    assert "fewer than 5 rows" in in_memory(frame, {"formula": "sbp ~ age + middle", "family": "gaussian",
                                                   "where": where}, rules=few)[0]
    assert in_memory(frame, {"formula": "sbp ~ age", "family": "gaussian", "where": where}, rules=few)[0]["n"] == 8


# -- through a real domain server ------------------------------------------------------------------

glm_round = functools.partial(builtin_round, name="glm")


def test_a_glm_over_more_rows_than_a_worker_may_hold_is_answered(tmp_path, alice_token):
    """Three million rows of seven numbers are 168 MB as a pandas frame, over the worker's 128 MB cap:
    a GLM that loaded them would be stopped for memory; computed in the engine it is answered."""
    rows = 3_000_000
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"x{i}": rng.uniform(-1, 1, rows) for i in range(1, 6)})
    frame["y"] = 1 + frame["x1"] - 2 * frame["x4"] + rng.normal(0, 0.5, rows)
    frame["k"] = np.arange(rows) % 10
    edits = {"builtin_memory_mb = 1024": "builtin_memory_mb = 128", 'memory_limit = "1GB"': 'memory_limit = "128MB"',
             "builtin_wall_seconds = 20": "builtin_wall_seconds = 300",
             "builtin_cpu_seconds = 15": "builtin_cpu_seconds = 300"}
    live = start_live(tmp_path, "big", frame, alice_token, policy_edits=edits)
    del frame
    try:
        with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=300) as client:
            args = {"formula": "y ~ x1 + x2 + x3 + x4 + x5", "family": "gaussian",
                    "where": [{"column": "k", "op": ">=", "value": 0}]}
            rid, first = glm_round(client, args)
            result = released(first)
            assert result["n"] == rows and result["finite"]
            beta = solve(result)
            assert beta[1] == pytest.approx(1, abs=0.01) and beta[4] == pytest.approx(-2, abs=0.01)
    finally:
        live.server.stop()


def test_levels_and_coefficients_stay_values_and_overflow_is_reported_not_raised(tmp_path, alice_token):
    """SQL in a level is a level no row has (an empty column); coefficients chosen to overflow exp()
    come back as ``finite: false`` for the analyst to halve, not as an engine error."""
    live = start_live(tmp_path, "values", clinic(), alice_token)
    hostile = "icu') OR 1=1; DROP TABLE data; --"
    try:
        with httpx.Client(base_url=live.url, headers=auth(alice_token), timeout=120) as client:
            args = {"formula": "visits ~ age + C(ward)", "family": "poisson",
                    "levels": {"ward": ["cardio", "general", hostile]}}
            rid, first = glm_round(client, args)
            result = released(first)
            assert result["columns"] == ["Intercept", "age", "C(ward)[T.general]", f"C(ward)[T.{hostile}]"]
            p = len(result["columns"])
            pairs = [(a, b) for a in range(p) for b in range(a, p)]
            last = [v for (a, b), v in zip(pairs, result["xtwx"]) if b == p - 1]
            assert last == [0.0] * p  # the hostile level's column is all zeros
            honest = {**args, "levels": {"ward": ["cardio", "general"]}}
            _, plain = glm_round(client, honest)
            assert released(plain)["n"] == result["n"]  # the hostile level selected no row
            _, overflow = glm_round(client, args, {"beta": [800.0, 10.0, 0.0, 0.0]}, rid, 2)
            assert released(overflow)["finite"] is False
    finally:
        live.server.stop()


def test_the_step_on_postgres_equals_the_parquet_copy(table, postgres_database, monkeypatch):
    """The same SQL, translated, on the owner's PostgreSQL table: the same numbers and refusals."""
    from fednb.domain.data.engines.postgres import PostgresEngine
    from tests.pg_tables import write_table

    frame, local = table
    write_table(postgres_database, "clinic", frame)
    remote = PostgresEngine(postgres_database, "clinic")
    try:
        for formula, family, levels in FORMULAS:
            args = {"formula": formula, "family": family, "levels": levels,
                    "where": [{"column": "age", "op": ">", "value": 25}]}
            expected, expected_evidence = in_engine(local, args)
            got, evidence = in_engine(remote, args, monkeypatch=monkeypatch)
            assert_same(got, expected)
            assert evidence["rows"]["rows"] == expected_evidence["rows"]["rows"]
            step = {"beta": solve(expected)}
            assert_same(in_engine(remote, args, step, monkeypatch=monkeypatch)[0], in_engine(local, args, step)[0])
        for formula, family, beta in EXTREMES:
            args, inputs = {"formula": formula, "family": family}, {} if beta is None else {"beta": beta}
            if "exp(" in formula:  # PostgreSQL refuses a product that underflows a double: a clean error
                with pytest.raises(EngineError, match="refused the query"):
                    in_engine(remote, args, inputs)
                continue
            assert in_engine(remote, args, inputs)[0] == in_engine(local, args, inputs)[0], formula
        blocked = {"formula": "sbp ~ age + C(ward)", "family": "gaussian", "levels": {"ward": ["icu", "cardio"]},
                   "where": [{"column": "age", "op": "<", "value": 24}]}
        rules = DisclosureSection(min_cohort=5, safe_dof_threshold=1, max_parameters_per_row=1, min_cell_count=10)
        refusal = in_engine(remote, blocked, rules=rules)[0]
        assert isinstance(refusal, str) and refusal == in_engine(local, blocked, rules=rules)[0]
    finally:
        remote.close()
