"""The output checker's parts without a server: error text, rounding, metrics, dry runs of fednb.table and
fednb.stat on a mock (the same arithmetic as a domain, without the rules). Attacks through the real HTTP API
are in test_output_attacks.py."""

from __future__ import annotations

import pytest

import fednb
from fednb import codec
from fednb.demo import data
from fednb.domain.release import error_text, output_check
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.policy import DisclosureSection

CODE = "def f(df):\n    x = 1\n    raise ValueError(df)\n"


@pytest.mark.parametrize("message,expected", [
    ("ValueError: 63,45,71 (line 3 of your function)", "ValueError (line 3 of your function)"),
    ("Age63Bmi31: x (line 3 of your function)", "an exception of a type of its own (line 3 of your function)"),
    ("KeyError: 'bmi' (line 63 of your function)", "KeyError"),  # a line the code does not have
    ("ValueError", "ValueError"),
    ("", "an exception of a type of its own"),
    ("EncodeError: cannot release an object of type Patient63: return numbers (line 2 of your function)",
     "EncodeError: cannot release an object of type of your own: return numbers, text, lists, dicts, numpy "
     "arrays, pandas objects, fednb.table or fednb.stat (line 2 of your function)"),
    ("EncodeError: cannot release an object of type bytes: return", "EncodeError: cannot release an object of "
     "type bytes: return numbers, text, lists, dicts, numpy arrays, pandas objects, fednb.table or fednb.stat"),
])
def test_error_text_keeps_only_a_known_type_and_a_real_line(message, expected):
    assert error_text.reduce(message, CODE, show_text=False) == expected


def test_error_text_is_shown_clipped_when_the_policy_allows_it():
    assert error_text.reduce("ValueError: " + "9" * 1000, CODE, show_text=True) == "ValueError: " + "9" * 288 + "..."


def test_significant_digits_and_metrics():
    assert output_check.round_significant(63045071.0, 4) == 63050000.0
    assert output_check.round_significant(0.000123456, 3) == 0.000123
    rules = DisclosureSection()
    assert output_check.check_metrics({"loss": 0.123456, "acc": 1}, rules) == {"loss": 0.1235, "acc": 1.0}
    assert output_check.check_metrics(0.5, rules, "the evaluation") == {"value": 0.5}
    for bad, why in [({"loss": [1, 2]}, "not one finite number"), ({"loss": float("nan")}, "not one finite"),
                     ({f"m{i}": 1 for i in range(17)}, "at most 16"), ({"x" * 101: 1}, "characters of text"),
                     ("text", "dict of named numbers")]:
        with pytest.raises(Blocked, match=why):
            output_check.check_metrics(bad, rules)


def test_schema_labels_are_free_and_other_text_is_counted():
    frame = data.hospital("hospital-a")
    checker = output_check.OutputChecker(DisclosureSection(), frame)
    # labels are free once; each dict entry, list element and None costs one character
    assert checker.check_text({"sex": ["F", "M"], "smoker": None}) == 5
    assert output_check.OutputChecker(DisclosureSection(), frame).check_text({"rate": "abc"}) == 8
    with pytest.raises(Blocked, match="59 characters"):  # a column of labels is not a label
        output_check.OutputChecker(DisclosureSection(), frame).check_text(["F"] * 30)
    with pytest.raises(Blocked, match="characters of text"):
        output_check.OutputChecker(DisclosureSection(), frame).check_text(frame.head(3).to_csv())


@pytest.mark.parametrize("forged", [
    {"__fednb__": "ndarray", "dtype": "age63bmi31", "shape": [0], "data": []},
    {"__fednb__": "series", "name": None, "index": [], "index_names": [None], "data": [], "note": "63,45"},
    {"__fednb__": "float", "value": "63.45"},
    {"__fednb__": "secret", "data": "63"},
])
def test_encoded_values_from_the_child_are_rebuilt_from_known_parts_only(forged):
    """The sandbox child, where the analyst's code runs, can write any JSON as the encoded result."""
    with pytest.raises(Blocked, match="malformed"):
        output_check.OutputChecker(DisclosureSection(), data.hospital("hospital-a"), unchecked_allowed=True).check(forged)


def test_dry_run_of_table_and_stat_on_a_mock_matches_pandas():
    mock = data.hospital("hospital-a").sample(200, random_state=1).reset_index(drop=True)

    @fednb.function
    def summary(df):
        return {"by_sex": fednb.table(df, by="sex", value="bmi", agg="mean"),
                "old": fednb.stat(df[df.age > 60], "count"), "mean_bmi": fednb.stat(df.bmi)}

    out = fednb.dry_run(summary, mock)["mock"]
    expected = mock.groupby("sex")["bmi"].agg(["size", "mean"])
    assert out["by_sex"]["n"].tolist() == expected["size"].tolist()
    # as a domain releases them: rounded to the default significant digits (4)
    assert out["by_sex"]["mean"].tolist() == pytest.approx(expected["mean"].tolist(), rel=1e-3)
    assert out["old"] == int((mock.age > 60).sum()) and out["mean_bmi"] == pytest.approx(mock.bmi.mean(), rel=1e-3)


def test_shapes_refuse_what_they_cannot_describe():
    frame = data.hospital("hospital-a")
    with pytest.raises(ValueError, match="agg must be one of"):
        fednb.table(frame, by="sex", agg="median")
    with pytest.raises(ValueError, match="needs value="):
        fednb.table(frame, by="sex", agg="mean")
    with pytest.raises(ValueError, match="original index"):
        fednb.stat(frame.set_index("sex").bmi)
    with pytest.raises(ValueError, match="not numeric"):
        fednb.stat(frame.sex, "sum")
    encoded = codec.encode(fednb.stat(frame.bmi))
    assert encoded["__fednb__"] == "stat" and len(encoded["rows"]) == len(frame)


def test_a_forged_shape_naming_a_text_column_is_blocked_not_a_crash():
    frame = data.hospital("hospital-a")
    forged = {"__fednb__": "stat", "value": "sex", "agg": "mean", "rows": list(range(20)), "values": [1.0] * 20}
    with pytest.raises(Blocked, match="not the dataset's"):
        output_check.OutputChecker(DisclosureSection(), frame).check(forged)


def test_dry_run_warns_about_numbers_a_domain_would_block():
    mock = data.hospital("hospital-a").head(100)
    with pytest.warns(UserWarning, match="1 number\\(s\\) outside fednb.table/fednb.stat"):
        fednb.dry_run(fednb.function("def f(df):\n    return {'m': float(df.age.mean())}\n"), mock)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fednb.dry_run(fednb.function("def f(df):\n    return {'m': fednb.stat(df.age)}\n"), mock)


@pytest.mark.parametrize("body, why", [
    ("return fednb.table(df.assign(r=df.index), by='r')", "groups of a fednb.table have fewer than"),
    ("x = df.bmi.where(df.index == 0, 0.01).rename('x')\n    return fednb.stat(x, 'sum')", "dominance rule"),
    ("return [fednb.stat(df, 'count'), fednb.stat(df.iloc[1:], 'count')]", "differ by fewer than 10 rows"),
    ("return {'csv': df.head(3).to_csv()}", "free text"),
])
def test_dry_run_on_the_mock_predicts_the_refusal_and_says_which_check(body, why):
    """Before anything is submitted, the dry run tells the analyst which of the domain's checks would
    fire on code of this shape, with the domain's own words."""
    mock = data.hospital("hospital-a").sample(300, random_state=2)
    with pytest.warns(UserWarning, match="would block this: .*" + why):
        fednb.dry_run(fednb.function("def f(df):\n    " + body + "\n"), mock)


def test_dry_run_of_honest_work_predicts_no_refusal():
    import warnings

    mock = data.hospital("hospital-a").sample(300, random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fednb.dry_run(fednb.function("def f(df):\n    return fednb.table(df, by=['sex', 'smoker'], "
                                     "value='readmitted', agg='mean')\n"), mock)
