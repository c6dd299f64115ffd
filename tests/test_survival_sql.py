"""Kaplan–Meier and log-rank tables counted from the engine's streamed pieces equal the in-memory
tables: the same integers, groups, suppressions, merges and refusals, without reading the rows into
pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fednb.domain.data.engines import duckdb as duckdb_engines
from fednb.domain.release.disclosure import Blocked
from fednb.domain.review.policy import DisclosureSection
from fednb.domain.run import builtins
from fednb.domain.run.builtins import survival
from fednb.domain.run.builtins.registry import select
from fednb.domain.run.builtins.scan import Scan
from fednb.errors import InvalidInput
from tests.engine_support import parquet_engine

PUBLIC = {"ward": ["cardio", "general", "icu"], "tiny": ["a", "b"], "stage": [1, 2, 3]}


def cohort(n: int = 900, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ward = rng.choice(["cardio", "general", "icu"], n, p=[0.3, 0.6, 0.1]).astype(object)
    ward[:4] = "burns"  # hidden: counted as "(other)"
    time = rng.exponential(300, n)
    time[5::97] = np.nan
    time[6] = np.inf
    died = (rng.random(n) < 0.6).astype(float)
    died[7::89] = np.nan
    frame = pd.DataFrame({"time": time, "died": died, "dead": died == 1, "ward": ward,
                          "tiny": np.where(np.arange(n) < 6, "a", "b"), "stage": rng.integers(1, 4, n),
                          "age": rng.uniform(20, 90, n), "label": rng.choice(["x", "y"], n)})
    frame["two"] = frame["died"] * 2
    frame["negative"] = frame["time"] - 100
    return frame


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    frame = cohort()
    with parquet_engine(tmp_path_factory.mktemp("survival-sql"), frame) as engine:
        yield frame, engine


def outcome(fn):
    try:
        return fn()
    except (Blocked, InvalidInput) as exc:
        return f"{type(exc).__name__}: {exc}"


CASES = [
    ("kaplan_meier", {"duration": "time", "event": "died", "time_grid": [50, 100, 200, 400, 800]}),
    ("kaplan_meier", {"duration": "time", "event": "dead", "time_grid": list(np.arange(10, 1500, 10.0)),
                      "by": "ward"}),
    ("kaplan_meier", {"duration": "time", "event": "died", "time_grid": [100, 300], "by": "tiny"}),
    ("kaplan_meier", {"duration": "time", "event": "died", "time_grid": [100, 300], "by": "stage",
                      "where": [{"column": "age", "op": ">", "value": 40}]}),
    ("logrank", {"duration": "time", "event": "died", "time_grid": [30, 60, 120, 240], "by": "ward"}),
    ("kaplan_meier", {"duration": "time", "event": "two", "time_grid": [100]}),  # not 0/1
    ("kaplan_meier", {"duration": "negative", "event": "died", "time_grid": [100]}),
    ("kaplan_meier", {"duration": "label", "event": "died", "time_grid": [100]}),
    ("kaplan_meier", {"duration": "dead", "event": "died", "time_grid": [100]}),
    ("kaplan_meier", {"duration": "time", "event": "died", "time_grid": [100], "by": "label"}),  # no levels
    ("kaplan_meier", {"duration": "time", "event": "died", "time_grid": [100],
                      "where": [{"column": "age", "op": "<", "value": 20.5}]}),  # under the minimum cohort
]


@pytest.mark.parametrize("name, args", CASES, ids=[f"{n} {sorted(a.items())}"[:90] for n, a in CASES])
def test_the_table_from_the_engine_equals_the_table_in_memory(table, name, args, monkeypatch):
    frame, engine = table
    parsed = builtins.REGISTRY[name].args.model_validate(args)
    expected = outcome(lambda: survival.survival_table(parsed, select(frame, parsed.where),
                                                         builtins.Context(DisclosureSection(), PUBLIC)))
    readable = "label" not in (args["duration"], args.get("by"))
    if readable:  # the engine path must not read the rows into pandas
        monkeypatch.setattr(Scan, "frame", lambda *a, **k: pytest.fail("the table read its rows into pandas"))
    got = outcome(lambda: builtins.compute(name, args, engine, builtins.Context(DisclosureSection(), PUBLIC)))
    assert got == expected


def test_the_cases_cover_releases_suppressions_and_refusals(table):
    frame, _ = table
    results = [outcome(lambda a=a, n=n: survival.survival_table(
        builtins.REGISTRY[n].args.model_validate(a), select(frame, builtins.REGISTRY[n].args.model_validate(a).where),
        builtins.Context(DisclosureSection(), PUBLIC))) for n, a in CASES]
    released = [r for r in results if isinstance(r, dict)]
    assert len(released) == 5
    assert any(g["level"] == "(other)" for r in released for g in r["groups"])
    assert any(r["suppressed"] for r in released) and any(r["merged"] for r in released)
    refusals = [r for r in results if isinstance(r, str)]
    assert [r.split(":")[0] for r in refusals] == ["InvalidInput"] * 5 + ["Blocked"]


def test_the_table_is_counted_piece_by_piece(table, monkeypatch):
    """Pieces of 100 rows: the sums over pieces equal the one-piece table."""
    frame, engine = table
    args = {"duration": "time", "event": "died", "time_grid": [50, 100, 200, 400, 800], "by": "ward"}
    whole = builtins.compute("kaplan_meier", args, engine, builtins.Context(DisclosureSection(), PUBLIC))
    monkeypatch.setattr(duckdb_engines, "BATCH_ROWS", 100)
    pieces = builtins.compute("kaplan_meier", args, engine, builtins.Context(DisclosureSection(), PUBLIC))
    assert pieces == whole and whole["n"] > 800


def test_the_table_on_postgres_equals_the_parquet_copy(table, postgres_database, monkeypatch):
    from fednb.domain.data.engines.postgres import PostgresEngine
    from tests.pg_tables import write_table

    frame, local = table
    write_table(postgres_database, "cohort", frame)
    remote = PostgresEngine(postgres_database, "cohort")
    try:
        for name, args in CASES:
            if "label" in (args["duration"], args.get("by")):
                continue
            expected = outcome(lambda: builtins.compute(name, args, local, builtins.Context(DisclosureSection(), PUBLIC)))
            monkeypatch.setattr(Scan, "frame", lambda *a, **k: pytest.fail("the table read its rows into pandas"))
            got = outcome(lambda: builtins.compute(name, args, remote, builtins.Context(DisclosureSection(), PUBLIC)))
            monkeypatch.undo()
            assert got == expected, args
    finally:
        remote.close()
