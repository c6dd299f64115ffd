"""A hostile analyst against the built-ins' disclosure control, through the real HTTP API of a served domain.

Each attack is what an analyst with an ordinary token can send: auto-approved built-ins with chosen
``where`` filters, bins and levels. Each must end blocked (or noised) with the reason the analyst
reads, or, where a result is released, with nothing in it that places one person. Every test starts
its own domain: the differencing defence remembers every release, so attacks must not share one.
"""

from __future__ import annotations

import contextlib

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.api_support import assert_clean_error, auth, released
from tests.conftest import start_live

ROWS = 203
TARGET = 17  # the person the attacks try to single out


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    ids = np.arange(ROWS)
    age = rng.integers(20, 81, ROWS)
    bmi = np.clip(rng.normal(27, 3, ROWS), 18, 38).round(1)
    bmi[3], bmi[4] = 12.0, 45.0  # alone below and above the usual bins
    cost = rng.uniform(100, 200, ROWS).round(2)
    cost[5] = 1_000_000.0  # one department's cost dominates any total it is in
    ward = rng.choice(["general", "cardio"], ROWS)
    ward[:3] = "burns"  # a level too rare to publish
    flag = np.zeros(ROWS, dtype=int)
    flag[TARGET] = 1
    lab = rng.normal(5, 1, ROWS)
    lab2 = lab.copy()
    lab2[[10, 11]] = np.nan  # two people lack it
    lab6 = lab.copy()
    lab6[20:26] = np.nan  # six do
    x1 = rng.normal(0, 1, ROWS)
    return pd.DataFrame({
        "id": ids, "age": age, "bmi": bmi, "cost": cost, "sex": rng.choice(["F", "M"], ROWS), "ward": ward,
        "group": rng.choice(["a", "b", "c"], ROWS),
        "flag01": flag, "flag02": 2 * flag, "x1": x1, "y": 0.2 * age + x1 + rng.normal(0, 1, ROWS),
        "lab2": lab2, "lab6": lab6,
    })


@contextlib.contextmanager
def served(tmp_path, token: str, edits: dict[str, str] | None = None):
    live = start_live(tmp_path, "attacked", frame(), token, policy_edits=edits)
    try:
        with httpx.Client(base_url=live.url, headers=auth(token), timeout=60) as client:
            yield client
    finally:
        live.server.stop()


def ask(client: httpx.Client, name: str, **args) -> dict:
    """Submit built-in ``name`` and wait for its final state (a GLM: its first IRLS round's)."""
    body = {"dataset": "patients", "kind": "builtin", "name": name, "args": args}
    if name == "glm":
        body["limits"] = {"max_rounds": 5}
    r = client.post("/v1/requests", json=body, params={"wait": 0 if name == "glm" else 30})
    assert r.status_code == 201, r.text
    final = r.json()
    if name == "glm":
        rid = final["id"]
        r = client.post(f"/v1/requests/{rid}/rounds", json={"round": 1, "inputs": {}}, params={"wait": 30})
        assert r.status_code == 202, r.text
        return {**r.json(), "id": rid}
    if final["status"] not in ("done", "blocked", "failed"):
        final = client.get(f"/v1/requests/{final['id']}", params={"wait": 30}).json()
    assert final["status"] in ("done", "blocked", "failed"), final
    return final


def refused(client: httpx.Client, name: str, **args) -> str:
    """Submit built-in ``name``, expecting a clear refusal at submission; returns its message."""
    body = {"dataset": "patients", "kind": "builtin", "name": name, "args": args, "limits": {"max_rounds": 5}}
    r = client.post("/v1/requests", json=body)
    assert_clean_error(r, 400)
    return r.json()["error"]


def blocked(final: dict, *phrases: str) -> None:
    assert final["status"] == "blocked", (final["status"], final.get("result"), final.get("reason"))
    for phrase in phrases:
        assert phrase in final["reason"], final["reason"]
    assert final.get("result") is None


NOT_TARGET = [{"column": "id", "op": "!=", "value": TARGET}]

# every built-in, asked twice: on all rows, then on all rows but the target's
DIFFERENCING = {
    "count": {},
    "sum": {"column": "age"},
    "mean": {"column": "age"},
    "variance": {"column": "age"},
    "histogram": {"column": "age", "bins": [20, 40, 60, 81]},
    "quantiles": {"column": "age", "bins": [30, 40, 50, 60, 70]},
    "crosstab": {"row": "sex", "col": "group"},
    "glm": {"formula": "y ~ age + x1", "family": "gaussian"},
}


@pytest.mark.parametrize("name", list(DIFFERENCING))
def test_two_where_filters_differing_by_one_row_are_blocked_naming_the_earlier_release(name, tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        first = ask(client, name, **DIFFERENCING[name])
        released(first)
        second = ask(client, name, **DIFFERENCING[name], where=NOT_TARGET)
        blocked(second, f"earlier release {first['id']}", "differencing attack", "differ from those")
        # the same rows again are harmless and still answered
        assert ask(client, name, **DIFFERENCING[name])["status"] == "done"


def test_differencing_is_checked_in_both_directions_and_across_built_ins(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        small = released(ask(client, "count", where=NOT_TARGET))
        assert small["n"] == ROWS - 1
        blocked(ask(client, "sum", column="age"), "differencing attack")
        # a histogram cell against a count over the same bin with one row more (the target is 77)
        hist = released(ask(client, "histogram", column="age", bins=[20, 60, 81], where=NOT_TARGET))
        assert hist["suppressed"] == 0
        bin_rows = [{"column": "age", "op": ">=", "value": 60}]
        blocked(ask(client, "count", where=bin_rows), "differencing attack")


def test_a_glm_with_an_indicator_for_one_person_is_blocked_whatever_its_coding(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        for column in ("flag01", "flag02"):  # 0/2 passed the old 0/1-only check and gave the target's sums
            final = ask(client, "glm", formula=f"y ~ age + {column}", family="gaussian")
            blocked(final, f"the model column '{column}' differs from its most common value on fewer than 5 rows")
        interaction = ask(client, "glm", formula="y ~ age + flag02:x1", family="gaussian")
        blocked(interaction, "differs from its most common value on fewer than 5 rows")


def test_a_binary_search_over_where_thresholds_is_stopped_early(tmp_path, alice_token):
    truth = frame()
    with served(tmp_path, alice_token) as client:
        # with and without the target: the pair's difference says on which side the target's bmi lies
        lo, hi, answered = 10.0, 50.0, 0
        for _ in range(20):
            mid = (lo + hi) / 2
            below = [{"column": "bmi", "op": "<", "value": mid}]
            with_target = ask(client, "count", where=below)
            without = ask(client, "count", where=below + NOT_TARGET)
            if with_target["status"] != "done" or without["status"] != "done":
                break
            answered += 1
            lo, hi = (lo, mid) if with_target["result"]["n"] > without["result"]["n"] else (mid, hi)
        assert answered == 0
        blocked(without, "differencing attack")
        # thresholds alone, closing in on the target's value: no two released counts differ by 1..9 rows
        target = float(truth.bmi[TARGET])
        counts = []
        for step in (2.0, 1.0, 0.5, 0.2, 0.1, 0.05):
            for t in (target - step, target + step):
                final = ask(client, "count", where=[{"column": "bmi", "op": "<", "value": t}])
                if final["status"] == "done":
                    counts.append(final["result"]["n"])
                else:
                    assert final["status"] == "blocked", final
                    assert "differencing attack" in final["reason"] or "minimum cohort" in final["reason"]
        assert len(counts) >= 2
        gaps = {abs(a - b) for a in counts for b in counts}
        assert not gaps & set(range(1, 10)), sorted(counts)


def _attacker_interval(result: dict) -> tuple[int, int]:
    """The narrowest interval an analyst can give one hidden cell from n and the shown cells,
    assuming every hidden cell holds at least one row."""
    cells = [result["below"], *result["counts"], result["above"]]
    hidden = [c for c in cells if c is None]
    rest = result["n"] - sum(c for c in cells if c is not None)
    return 1, rest - (len(hidden) - 1)


def test_hidden_cell_totals_cannot_be_recovered_by_arithmetic(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        # one person below 15 and one above 40: two hidden cells adding up to 2 hold exactly one each
        result = released(ask(client, "histogram", column="bmi", bins=[15, 20, 25, 30, 35, 40]))
        assert result["below"] is None and result["above"] is None
        assert result["suppressed"] >= 3
        low, high = _attacker_interval(result)
        assert high - low >= 5, result


def test_a_crosstab_whose_rare_level_total_follows_from_its_margins_is_blocked(tmp_path, alice_token):
    # 3 rows are in the unpublished ward 'burns', pooled as '(other)'. With n and the 'cardio' and
    # 'general' totals (each a count any analyst can get), the '(other)' column holds exactly 3 rows, and
    # its two hidden cells are known to within 1: no choice of cells to hide protects them
    with served(tmp_path, alice_token) as client:
        blocked(ask(client, "crosstab", row="sex", col="ward"), "small cells cannot be hidden well enough")


def test_a_lone_hidden_bin_among_shown_zeros_does_not_place_its_person(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        # only the person with bmi 45 is at or above 40; every other bin there is empty
        result = released(ask(client, "histogram", column="bmi", bins=[10, 40, 42, 44, 46, 48]))
        assert result["counts"][3] is None  # [44, 46)
        low, high = _attacker_interval(result)
        assert high - low >= 5, result
        # and the count that would give the other hidden cell exactly is a differencing attack
        blocked(ask(client, "count", where=[{"column": "bmi", "op": "<", "value": 40}]), "differencing attack")


def test_a_sum_or_mean_dominated_by_one_record_is_blocked(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        for name in ("sum", "mean", "variance"):
            blocked(ask(client, name, column="cost"),
                    f"the {name} of 'cost' cannot be released", "more than 90% of it (dominance rule)")
        blocked(ask(client, "glm", formula="y ~ age + cost", family="gaussian"),
                "the sums of the model column 'cost' cannot be released", "dominance rule")
        # without the dominant record the same statistic is released
        others = [{"column": "cost", "op": "<", "value": 1000}]
        assert released(ask(client, "mean", column="cost", where=others))["n"] == ROWS - 1


def test_glm_dropped_is_not_an_exact_small_count(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        two_missing = released(ask(client, "glm", formula="y ~ age + lab2", family="gaussian"))
        assert two_missing["dropped"] is None and two_missing["dropped_below"] == 5
        assert two_missing["n"] == ROWS - 2  # n itself is >= min_cohort, and differencing guards it
        blocked(ask(client, "count"), "differencing attack")  # count - n would be the 2 people


def test_glm_levels_are_no_oracle_for_hidden_rare_categories(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        # naming the hidden rare level 'burns' answers exactly as naming one that does not exist
        answers = []
        for guess in ("burns", "zzz"):
            result = released(ask(client, "glm", formula="y ~ age + C(ward)", family="gaussian",
                                  levels={"ward": ["cardio", "general", guess]}))
            answers.append({k: v for k, v in result.items() if k != "columns"})
        assert answers[0] == answers[1]
        assert answers[0]["dropped"] is None  # the 3 'burns' rows are left out, not counted exactly


def test_models_with_too_few_residual_degrees_of_freedom_or_saturated_are_blocked(tmp_path, alice_token):
    few = [{"column": "id", "op": "<", "value": 14}]
    with served(tmp_path, alice_token) as client:
        blocked(ask(client, "glm", formula="y ~ age + x1 + lab6 + bmi", family="gaussian", where=few),
                "fewer than 10 residual degrees of freedom")
    with served(tmp_path / "loose", alice_token, {"safe_dof_threshold = 10": "safe_dof_threshold = 1"}) as client:
        blocked(ask(client, "glm", formula="y ~ age + x1 + bmi + cost", family="gaussian", where=few),
                "is saturated for these rows")


NOISY_EVERYTHING = {'noisy = []': 'noisy = ["count", "sum", "mean", "variance", "histogram", "crosstab"]'}


def test_under_a_noisy_policy_quantiles_and_glm_are_refused_not_released_exactly(tmp_path, alice_token):
    with served(tmp_path, alice_token, NOISY_EVERYTHING) as client:
        why = refused(client, "quantiles", column="age", bins=[30, 40, 50, 60, 70])
        assert "releases count, histogram only with noise" in why and "quantiles has no noisy version" in why
        why = refused(client, "glm", formula="y ~ age + x1", family="gaussian")
        assert "only with noise" in why and "glm has no noisy version" in why
        noisy = released(ask(client, "count"))
        assert noisy["dp"]["std"]["n"] > 0 and noisy["n"] != ROWS


def test_metadata_shows_rounded_rows_and_thresholded_missingness(tmp_path, alice_token):
    with served(tmp_path, alice_token) as client:
        meta = client.get("/v1/datasets/patients").json()
        assert meta["rows"] == 200  # 203, rounded
        missing = {c["name"]: c["missing"] for c in meta["columns"]}
        assert missing["lab2"] is False  # two people lack it: under the cell count, not shown
        assert missing["lab6"] is True


def test_a_domain_made_before_the_differencing_defence_gets_its_table_on_open(tmp_path):
    import sqlite3

    from fednb.domain import Domain
    from tests.conftest import make_domain

    make_domain(tmp_path, "old", frame()).close()
    with sqlite3.connect(tmp_path / "old" / "domain.db") as conn:
        conn.execute("DROP TABLE released_rows")
        conn.execute("DROP TABLE alembic_version")  # a folder from before migrations, and before the defence
    d = Domain(tmp_path / "old")
    try:
        assert d.store.query_one("SELECT COUNT(*) AS n FROM released_rows")["n"] == 0
    finally:
        d.close()
