"""mean, sum, variance and a Gaussian GLM's first round read the rows in as few passes as their
checks allow, and still decide exactly as the magnitude rules on every value: the largest
contribution is bounded by √Σx² from the same pass (√Σd⁴ for a variance's M2), and only sums that
bound cannot settle read their top values."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from fednb.domain.data.engines.duckdb import ParquetEngine
from fednb.domain.release import disclosure
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run import builtins

RULES = DisclosureSection(min_cohort=3)


@contextmanager
def passes_of(engine) -> Iterator[list[str]]:
    """Every query and stream the engine runs inside the block (each is one pass over the rows)."""
    passes: list[str] = []
    methods = ("query", "arrow_batches", "batches")
    for method in methods:
        original = getattr(engine, method)

        def recorded(sql, params=(), _original=original):
            passes.append(sql)
            return _original(sql, params)

        setattr(engine, method, recorded)
    try:
        yield passes
    finally:
        for method in methods:
            delattr(engine, method)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    rng = np.random.default_rng(3)
    n = 5000
    frame = pd.DataFrame({"x": rng.uniform(-1, 1, n), "rich": 100.0 + np.arange(n) % 7, "k": np.arange(n) % 10})
    frame.loc[40, "rich"] = 1e9  # one row dominates its column's sum
    frame["y"] = 1 + 2 * frame["x"] + rng.normal(0, 1, n)
    frame["z"] = rng.normal(0, 1, n)
    frame["g"] = rng.choice(["a", "b", "c"], n)
    frame["h"] = rng.choice(["u", "v"], n)
    path = tmp_path_factory.mktemp("one-pass") / "data.parquet"
    frame.to_parquet(path, index=False)
    engine = ParquetEngine(path, memory_limit="256MB", threads=1)
    yield engine
    engine.close()


EVERY_ROW = [{"column": "k", "op": ">=", "value": 0}]


@pytest.mark.parametrize("name, passes", [("mean", 1), ("sum", 1), ("variance", 2)])
def test_a_sum_no_row_dominates_is_one_pass_and_a_variance_two(engine, name, passes):
    with passes_of(engine) as seen:
        result = builtins.compute(name, {"column": "x", "where": EVERY_ROW}, engine, builtins.Context(RULES))
    assert result["n"] == 5000
    assert len(seen) == passes, seen


def test_a_dominated_sum_reads_its_top_values_and_is_refused(engine):
    with passes_of(engine) as seen:
        with pytest.raises(Blocked, match="dominance rule"):
            builtins.compute("mean", {"column": "rich", "where": EVERY_ROW}, engine, builtins.Context(RULES))
    assert len(seen) == 2 and "max(abs(" in seen[1]


def test_a_gaussian_glm_first_round_is_one_pass_over_the_kept_rows(engine):
    """Categorical terms too: each level's rows are counted in the same pass."""
    args = {"formula": "y ~ x + z + C(g) + C(h)", "family": "gaussian", "where": EVERY_ROW,
            "levels": {"g": ["a", "b", "c"], "h": ["u", "v"]}}
    with passes_of(engine) as seen:
        result = builtins.compute("glm", args, engine, builtins.Context(RULES, {"g": ["a", "b", "c"], "h": ["u", "v"]}))
    assert result["finite"] and result["n"] == 5000
    # the sums and every check's aggregates in one pass; the selected rows' count (for ``dropped``) reads
    # the filter's column alone
    assert len(seen) == 2 and seen[1].startswith("SELECT count(*) FROM data WHERE"), seen


def samples(rng: np.random.Generator):
    """Columns on each side of the rules: plain, one or two outliers of every size, ties, signs, zeros."""
    for case in range(400):
        n = int(rng.integers(3, 40))
        values = [rng.uniform(0, 1, n), rng.normal(0, 1, n), rng.exponential(1, n), np.ones(n), np.zeros(n),
                  -rng.uniform(0, 1, n), rng.integers(0, 3, n).astype(float)][case % 7]
        for _ in range(int(rng.integers(0, 3))):
            values[int(rng.integers(0, n))] = float(rng.choice([-1, 1]) * 10 ** rng.uniform(0, 4))
        yield values


def reason(exc: Blocked) -> str:
    return str(exc).split("cannot be released", 1)[-1]


def expected(name: str, values: np.ndarray, mean: float | None) -> str | None:
    """The decision of the in-memory rules on every value (and on the squared deviations for M2)."""
    try:
        disclosure.check_cohort(values.size, RULES)
        disclosure.check_magnitude(values, RULES, "it")
        if name == "variance":
            disclosure.check_magnitude((values - mean) ** 2, RULES, "it")
    except Blocked as exc:
        return reason(exc)
    return None


@pytest.mark.parametrize("name", ["mean", "variance"])
def test_the_one_pass_decides_as_the_rules_on_every_value(name):
    rng = np.random.default_rng(11)
    decided = {"released": 0, "refused": 0}
    for values in samples(rng):
        frame = pd.DataFrame({"v": values})
        try:
            result = builtins.compute(name, {"column": "v"}, frame, builtins.Context(RULES))
            got = None
        except Blocked as exc:
            result, got = None, reason(exc)
        mean = result["mean"] if result else float(values.mean())
        assert got == expected(name, values, mean), values
        decided["released" if got is None else "refused"] += 1
    assert min(decided.values()) > 50  # both sides of the rules were exercised


def test_missing_and_nan_values_are_left_out_and_infinite_ones_kept(tmp_path):
    """A float column's rows with a value are found by one comparison (x <= +inf); NULL and NaN rows
    are left out of n and of the differencing evidence as ``NOT isnan(x)`` left them, ±inf kept."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fednb.domain.release.differencing import evidence

    values = [float(v) for v in range(40)]
    values[3], values[7], values[9], values[11] = float("nan"), None, float("inf"), float("-inf")
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"v": pa.array(values, type=pa.float64(), from_pandas=False)}), path)
    engine = ParquetEngine(path, memory_limit="64MB", threads=1)
    try:
        for name in ("sum", "mean", "variance"):
            ctx = builtins.Context(RULES)
            result = builtins.compute(name, {"column": "v"}, engine, ctx)
            assert result["n"] == 38, name
            kept = [i for i in range(40) if i not in (3, 7)]
            assert ctx.evidence["rows"]["sha256"] == evidence(pd.Index(kept))["sha256"], name
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_the_files_own_bound_decides_as_the_rules_on_every_value(tmp_path, name):
    """Over a Parquet file the largest contribution is bounded by the file's column statistics, which
    also cover rows outside the selection: an outlier there makes the bound loose (only the top
    values' pass then decides), never too small, so the decisions are the rules' on the selected rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    decided = {"released": 0, "refused": 0}
    for case, values in enumerate(samples(rng)):
        if case % 3:
            continue
        outside = float(rng.choice([-1, 1]) * 10 ** rng.uniform(-1, 5))  # a row the selection leaves out
        path = tmp_path / f"{case}.parquet"
        pq.write_table(pa.table({"v": [*values, outside], "kept": [1] * values.size + [0]}), path,
                       row_group_size=int(rng.integers(2, 20)))
        engine = ParquetEngine(path, memory_limit="64MB", threads=1)
        try:
            assert engine.largest_magnitude("v") >= np.abs(values).max()
            try:
                builtins.compute(name, {"column": "v", "where": [{"column": "kept", "op": "==", "value": 1}]},
                                 engine, builtins.Context(RULES))
                got = None
            except Blocked as exc:
                got = reason(exc)
        finally:
            engine.close()
        assert got == expected(name, values, None), (values, outside)
        decided["released" if got is None else "refused"] += 1
    assert min(decided.values()) > 15


def test_a_file_without_statistics_bounds_by_the_squares_and_a_part_asks_its_span(tmp_path):
    """No column statistics: the pass sums the squares for the bound, as over a database's table. A
    selection of fewer than every row asks its first and last row id in one more pass, and its
    evidence is the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fednb.domain.release.differencing import evidence

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"v": np.linspace(1, 2, 300), "k": np.arange(300) % 3}), path, write_statistics=False)
    engine = ParquetEngine(path, memory_limit="64MB", threads=1)
    try:
        assert engine.largest_magnitude("v") is None and engine.numbered_rows() == 300
        with passes_of(engine) as seen:
            ctx = builtins.Context(RULES)
            assert builtins.compute("mean", {"column": "v"}, engine, ctx)["n"] == 300
        assert len(seen) == 1 and "* (" in seen[0]
        with passes_of(engine) as seen:
            ctx = builtins.Context(RULES)
            part = builtins.compute("mean", {"column": "v", "where": [{"column": "k", "op": "==", "value": 1}]},
                                    engine, ctx)
        assert part["n"] == 100 and len(seen) == 3  # the sums, the span, the ids (not one run)
        assert ctx.evidence["rows"]["sha256"] == evidence(pd.Index(range(1, 300, 3)))["sha256"]
    finally:
        engine.close()
