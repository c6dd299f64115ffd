"""DuckDB as the built-ins' engine: the same answers as pandas on awkward data, filters that cannot
carry SQL, and the traps of a first hour (spaced names, misspelt levels and columns, crosstab(x, x))."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

import fednb
from fednb.domain.data.engines import EngineError
from fednb.domain.data.engines.base import memory_bytes
from fednb.domain.data.engines.duckdb import ParquetEngine
from fednb.domain.data.engines.factory import open_engine
from fednb.domain.release import magnitude
from fednb.domain.review.policy import DisclosureSection, EngineSection
from fednb.domain.run import builtins
from fednb.domain.run.builtins.registry import Condition, select
from fednb.domain.run.builtins.scan import Scan, magnitude_reason
from fednb.errors import InvalidInput
from tests.api_support import assert_clean_error, auth
from tests.conftest import start_live

LEVELS = {"diagnosis": ["benign", "malignant"], "smoker": [False, True]}


def awkward(n: int = 400, seed: int = 3) -> pd.DataFrame:
    """Missing values everywhere, booleans with gaps, a category, dates, a name with a space and
    one with SQL in it."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "age": rng.integers(18, 95, n).astype("float"),
        "bmi": np.round(rng.normal(27, 5, n), 1),
        "visits": rng.integers(0, 9, n),
        "smoker": pd.array(rng.choice([True, False], n), dtype="boolean"),
        "diagnosis": pd.Categorical(rng.choice(["benign", "malignant"], n)),
        "admitted": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
        "blood pressure": np.round(rng.normal(125, 15, n)),
        'a" FROM x --': rng.integers(0, 3, n),
    })
    df.loc[::7, "age"] = np.nan
    df.loc[3::11, "bmi"] = np.nan
    df.loc[5::13, "smoker"] = pd.NA
    df.loc[2::17, "diagnosis"] = np.nan
    return df


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    df = awkward()
    folder = tmp_path_factory.mktemp("engine") / "datasets" / "awkward"
    folder.mkdir(parents=True)
    df.to_parquet(folder / "data.parquet", index=False)
    engine = open_engine(folder, EngineSection(memory_limit="256MB", threads=1))
    yield pd.read_parquet(folder / "data.parquet"), engine
    engine.close()


FILTERS = [
    [],
    [("age", ">", 40)],
    [("age", "!=", 50.0)],
    [("bmi", "<=", 25), ("visits", ">=", 2)],
    [("smoker", "==", True)],
    [("smoker", "!=", True)],
    [("diagnosis", "in", ["malignant"])],
    [("diagnosis", "not in", ["malignant"])],
    [("diagnosis", "in", ["benign", None])],
    [("diagnosis", "==", None)],
    [("diagnosis", "!=", None)],
    [("blood pressure", ">", 120)],
    [('a" FROM x --', "==", 1)],
]


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_the_compiled_filter_selects_the_rows_pandas_selected(table, where):
    df, engine = table
    conditions = [Condition(column=c, op=op, value=v) for c, op, v in where]
    # pandas' nullable dtypes drop a missing value under != and not in, its NumPy-backed ones keep it;
    # the engine keeps it for every column (a missing value differs from every value)
    numpy_backed = df.astype({"smoker": object})
    expected = select(numpy_backed, conditions).index.to_numpy()
    got = np.array(sorted(Scan(engine, conditions, LEVELS).rows()), dtype=np.int64)
    assert got.tolist() == expected.tolist()


CALLS = [
    ("count", {}), ("count", {"column": "bmi"}), ("sum", {"column": "visits"}), ("mean", {"column": "bmi"}),
    ("mean", {"column": "smoker"}), ("variance", {"column": "age"}), ("histogram", {"column": "bmi", "bins": [20, 25, 30, 35]}),
    ("quantiles", {"column": "age", "bins": [30, 50, 70]}), ("crosstab", {"row": "diagnosis", "col": "smoker"}),
    ("glm", {"formula": "bmi ~ age + C(diagnosis)", "family": "gaussian", "levels": {"diagnosis": ["benign", "malignant"]}}),
]


@pytest.mark.parametrize("name,args", CALLS, ids=[f"{n}-{a}" for n, a in CALLS])
def test_each_builtin_over_parquet_equals_pandas(table, name, args):
    df, engine = table
    where = [{"column": "blood pressure", "op": ">", "value": 110}]
    sql_ctx, pd_ctx = (builtins.Context(DisclosureSection(), LEVELS) for _ in range(2))
    got = builtins.compute(name, {**args, "where": where}, engine, sql_ctx)
    rows = select(df, [Condition(**w) for w in where])
    expected = reference(name, args, rows, pd_ctx)
    assert got.keys() == expected.keys()
    for key in got:
        if isinstance(got[key], float):
            assert got[key] == pytest.approx(expected[key], rel=1e-12), key
        elif key in ("xtwx", "xtwz"):
            assert np.allclose(got[key], expected[key], rtol=1e-12), key
        else:
            assert got[key] == expected[key], key
    assert sql_ctx.evidence["rows"] == pd_ctx.evidence["rows"]  # the same row set for the differencing defence
    assert sql_ctx.evidence.get("cells") == pd_ctx.evidence.get("cells")


def reference(name: str, args: dict, rows: pd.DataFrame, ctx) -> dict:
    """What pandas and NumPy give on the selected rows, with the same evidence."""
    from fednb.domain.release.differencing import evidence
    from fednb.domain.run.builtins.stats import _bin_ids

    def cells(index, ids, counts, hidden):
        sets = [evidence(index[ids == c]) for c in range(len(counts)) if counts[c] > 0 and not hidden[c]]
        if (counts[hidden] > 0).any():
            sets.append(evidence(index[np.isin(ids, np.flatnonzero(hidden))]))
        return sets

    if name == "glm":
        return builtins.compute(name, args, rows, ctx)
    if name == "crosstab":
        pair = rows[[args["row"], args["col"]]].dropna()
        ctx.rows_used(pair.index)
        table = pd.crosstab(pair[args["row"]].astype(object), pair[args["col"]].astype(object))
        table = table.reindex(index=LEVELS[args["row"]], columns=LEVELS[args["col"]], fill_value=0)
        r = pd.Categorical(pair[args["row"]].astype(object), categories=LEVELS[args["row"]]).codes
        c = pd.Categorical(pair[args["col"]].astype(object), categories=LEVELS[args["col"]]).codes
        flat = table.to_numpy().reshape(-1)
        ctx.evidence["cells"] = cells(pair.index.to_numpy(), r * 2 + c, flat, np.zeros(4, bool))
        return {"n": len(pair), "rows": LEVELS[args["row"]], "cols": LEVELS[args["col"]],
                "counts": table.to_numpy().tolist(), "suppressed": 0}
    s = rows[args["column"]] if "column" in args else None
    present = rows.index if s is None else rows.index[s.notna().to_numpy()]
    ctx.rows_used(present)
    x = None if s is None else s.dropna().astype(float).to_numpy()
    if name == "count":
        return {"n": len(present)}
    if name == "sum":
        return {"n": x.size, "sum": float(x.sum())}
    if name == "mean":
        return {"n": x.size, "mean": float(x.mean())}
    if name == "variance":
        return {"n": x.size, "mean": float(x.mean()), "m2": float(((x - x.mean()) ** 2).sum())}
    edges = args["bins"]
    if name == "histogram":
        ids = _bin_ids(x, edges)
        counts = np.bincount(ids, minlength=len(edges) + 1)
        ctx.evidence["cells"] = cells(present.to_numpy(), ids, counts, np.zeros(counts.size, bool))
        return {"n": x.size, "edges": edges, "below": int(counts[0]), "counts": counts[1:-1].tolist(),
                "above": int(counts[-1]), "suppressed": 0}
    below = [int((x < e).sum()) for e in edges]
    ids = np.searchsorted(np.asarray(edges, float), x, side="right")
    counts = np.bincount(ids, minlength=len(edges) + 1)
    ctx.evidence["cells"] = cells(present.to_numpy(), ids, counts, np.zeros(counts.size, bool))
    return {"n": x.size, "edges": [float(e) for e in edges], "below": below}


def test_the_magnitude_rules_read_from_sql_agree_with_the_rules_on_all_values():
    rng = np.random.default_rng(0)
    rules = DisclosureSection()
    for trial in range(3000):
        size = int(rng.integers(0, 8))
        values = rng.choice([0.0, 1.0, -2.0, 50.0, 1000.0], size) * rng.random(size) ** int(trial % 3)
        top = np.sort(np.abs(values))[::-1][:2]
        got = magnitude_reason(size, float(np.abs(values).sum()), top.tolist(), rules)
        assert got == magnitude.sensitive(values, n=rules.safe_nk_n, k=rules.safe_nk_k, p=rules.safe_pratio_p)


def test_the_engine_opens_no_other_file(table):
    _, engine = table
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "COPY (SELECT 1) TO '/tmp/fednb-engine-leak.csv'",
                "SET enable_external_access = true", "INSTALL httpfs"):
        with pytest.raises(EngineError):
            engine.query(sql)


def test_the_policy_names_its_engine_settings():
    assert memory_bytes("1GB") == 10**9 and memory_bytes("512MiB") == 2**29
    with pytest.raises(ValueError):
        EngineSection(memory_limit="a lot")
    with pytest.raises(ValueError):
        EngineSection(memory_limit="1MB")


def test_a_parquet_engine_reads_only_named_columns_and_samples(table):
    df, engine = table
    assert list(engine.frame(["bmi", "age"]).columns) == ["bmi", "age"]
    assert len(engine.frame(limit=5)) == 5
    assert engine.row_count() == len(df) and list(engine.columns()) == list(df.columns)
    assert set(engine.sample(50, seed=1).columns) == set(df.columns)
    assert isinstance(engine, ParquetEngine)


# -- through a real domain's HTTP API ----------------------------------------------------------------
@pytest.fixture(scope="module")
def clinic(tmp_path_factory, alice_token):
    """A served domain with the awkward table; one hidden level 'Benign ' (3 rows) in diagnosis."""
    df = awkward(600).assign(diagnosis=lambda d: d["diagnosis"].astype(object))
    df.loc[[1, 4, 8], "diagnosis"] = "Benign "
    live = start_live(tmp_path_factory.mktemp("clinic"), "clinic", df, alice_token)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield live, client, df
    live.server.stop()


def ask(live, client, name: str, args: dict):
    return client.post("/v1/requests?wait=30", headers=auth(live.token),
                       json={"dataset": "patients", "kind": "builtin", "name": name, "args": args})


@pytest.mark.parametrize("value", ["x'; DROP TABLE data; --", "benign' OR '1'='1", "\"; SELECT * FROM read_csv('/etc/passwd')"])
def test_sql_in_a_filter_value_is_only_a_value(clinic, value):
    live, client, df = clinic
    r = ask(live, client, "count", {"where": [{"column": "diagnosis", "op": "!=", "value": value}]})
    assert r.status_code in (200, 201) and r.json()["status"] == "done", r.text
    assert r.json()["result"]["n"] == len(df)  # no row has that text: every row differs from it
    again = ask(live, client, "count", {})
    assert again.json()["result"]["n"] == len(df)  # and the table is still there


@pytest.mark.parametrize("column", ['a" FROM read_csv(\'/etc/passwd\') --', 'age" > 0 OR "age', "age; DROP TABLE data"])
def test_sql_in_a_column_name_is_refused_as_an_unknown_column(clinic, column):
    live, client, _ = clinic
    for args in ({"column": column}, {"where": [{"column": column, "op": "==", "value": 1}]}):
        r = ask(live, client, "count", args)
        assert_clean_error(r, 400)
        assert "no column" in r.json()["error"] and "root:" not in r.text


def test_a_column_whose_name_holds_sql_is_quoted_not_run(clinic):
    live, client, df = clinic
    r = ask(live, client, "count", {"where": [{"column": 'a" FROM x --', "op": "==", "value": 1}]})
    assert r.json()["status"] == "done", r.text
    assert r.json()["result"]["n"] == int((df['a" FROM x --'] == 1).sum())


def test_the_analyst_filters_on_a_column_with_spaces(clinic):
    live, _, df = clinic
    with fednb.connect([live.url], token=live.token) as fed:
        got = fed.dataset("patients").count(where="`blood pressure` > 120 and visits >= 2").value
    assert got == int(((df["blood pressure"] > 120) & (df["visits"] >= 2)).sum())


def test_a_misspelt_level_is_named_and_a_hidden_one_is_not_confirmed(clinic):
    live, client, df = clinic
    r = ask(live, client, "count", {"where": [{"column": "diagnosis", "op": "==", "value": "Benign"}]})
    assert_clean_error(r, 400)
    assert "no such level 'Benign' in diagnosis (did you mean 'benign'?)" in r.json()["error"]
    # 'Benign ' really is in the data (3 rows, so not public) and 'Benigm' is not: both near misses
    # get the same answer, decided from the public levels alone
    answers = {v: ask(live, client, "count", {"where": [{"column": "diagnosis", "op": "==", "value": v}]}).json()
               for v in ("Benign ", "Benigm")}
    assert {a["error"].replace(repr(v), "V") for v, a in answers.items()} == {
        "no such level V in diagnosis (did you mean 'benign'?)"}


def test_a_misspelt_column_gets_one_suggestion(clinic):
    live, client, _ = clinic
    r = ask(live, client, "mean", {"column": "bmii"})
    assert_clean_error(r, 400)
    assert r.json()["error"] == "dataset 'patients' has no column 'bmii' (did you mean 'bmi'?)"
    with fednb.connect([live.url], token=live.token) as fed, pytest.raises(InvalidInput) as err:
        fed.dataset("patients").mean("bmii")
    assert str(err.value).count("did you mean 'bmi'") == 1 and "visits" not in str(err.value)


def test_a_crosstab_of_a_column_with_itself_is_its_diagonal(clinic):
    live, client, df = clinic
    r = ask(live, client, "crosstab", {"row": "visits", "col": "visits"})
    assert r.json()["status"] == "done", r.text
    result = r.json()["result"]
    table = np.array([[c if c is not None else -1 for c in row] for row in result["counts"]])
    off = table[~np.eye(len(table), dtype=bool)]
    assert (off == 0).all()
    counts = df["visits"].value_counts()
    assert [table[i, i] for i in range(len(result["rows"]))] == [int(counts[v]) for v in result["rows"]]


def test_a_large_file_is_converted_out_of_core_with_the_same_listing(tmp_path, monkeypatch):
    from fednb.domain import Domain
    from fednb.domain.data import datasets

    df = awkward(3000).drop(columns=["admitted", "smoker"]).assign(diagnosis=lambda d: d["diagnosis"].astype(object))
    df.loc[::500, "diagnosis"] = "rare"  # 6 rows: public (k = 5)
    df.loc[[7, 9], "diagnosis"] = "rarest"  # 2 rows: hidden
    df.to_csv(tmp_path / "table.csv", index=False)
    small = Domain.init(tmp_path / "small", "small").add_dataset(tmp_path / "table.csv", "t")
    monkeypatch.setattr(datasets, "LARGE_FILE_BYTES", 0)
    monkeypatch.setattr(datasets, "SAMPLE_ROWS", 1000)
    domain = Domain.init(tmp_path / "large", "large")
    large = domain.add_dataset(tmp_path / "table.csv", "t")
    assert large.rows == small.rows
    for a, b in zip(large.columns, small.columns):
        assert (a.name, a.kind, a.levels, a.missing) == (b.name, b.kind, b.levels, b.missing)
    assert "rarest" not in next(c for c in large.columns if c.name == "diagnosis").levels
    assert len(pd.read_parquet(domain.mock_path("t"))) == 500
    assert domain.load("t", ["bmi"])["bmi"].tolist() == pytest.approx(df["bmi"].tolist(), nan_ok=True)


def test_filters_on_dates_and_wrong_shapes_answer_in_words(table):
    df, engine = table
    ctx = builtins.Context(DisclosureSection(), LEVELS)
    got = builtins.compute("count", {"where": [{"column": "admitted", "op": "<", "value": "2021-01-01"}]}, engine, ctx)
    assert got["n"] == int((df["admitted"] < "2021-01-01").sum())
    for bad, words in [({"column": "age", "op": "==", "value": [1, 2]}, "needs 'in'"),
                       ({"column": "age", "op": ">", "value": "old"}, "cannot compare"),
                       ({"column": "admitted", "op": "<", "value": "soon"}, "filter value has its column's type")]:
        with pytest.raises((InvalidInput, EngineError), match=words):
            builtins.compute("count", {"where": [bad]}, engine, builtins.Context(DisclosureSection(), LEVELS))
