"""Datasets whose rows stay in the owner's Spark: a real local Spark (``local[2]``, Debian's OpenJDK),
one session for the module, the owner's table a Parquet folder written by Spark itself."""

from __future__ import annotations

import json
import socket

import duckdb
import numpy as np
import pandas as pd
import pytest

# Spark is an optional extra (a JVM-sized install): `pip install -c constraints.txt -e ".[spark]"` and a
# Java runtime run this module; .ci/run installs both
pytest.importorskip("pyspark", reason="the 'spark' extra is not installed (pip install -e '.[spark]', and Java)")

from fednb.demo import data  # noqa: E402
from fednb.domain import Domain  # noqa: E402
from fednb.domain.data import sources  # noqa: E402
from fednb.domain.data.engines.base import EngineError  # noqa: E402
from fednb.domain.data.engines.spark import SparkEngine, session  # noqa: E402

pytestmark = pytest.mark.timeout(600)
MASTER = "local[2]"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The owner's lakehouse: ``patients`` as Parquet written by Spark, and its pandas twin."""
    frame = data.hospital("hospital-b")
    frame.loc[frame.index % 41 == 0, "bmi"] = np.nan
    folder = tmp_path_factory.mktemp("lake") / "patients"
    session(MASTER).createDataFrame(frame).write.parquet(str(folder))
    return {"table": f"parquet.`{folder}`", "frame": frame}


def test_listing_of_a_spark_table_equals_the_listing_of_its_file_copy(tmp_path, lake):
    d = Domain.init(tmp_path / "dom", "dom")
    csv = tmp_path / "patients.csv"
    lake["frame"].to_csv(csv, index=False)
    local = d.add_dataset(csv, "filecopy")
    remote = sources.add_to_domain(d, MASTER, lake["table"], "patients")
    assert [c.model_dump() for c in remote.columns] == [c.model_dump() for c in local.columns]
    assert remote.rows == local.rows and d.row_count("patients") == len(lake["frame"])
    assert json.loads((d.path / "datasets" / "patients" / "source.json").read_text())["engine"] == "spark"
    assert len(pd.read_parquet(d.mock_path("patients"))) > 0


def test_aggregates_run_in_spark_and_equal_duckdb_on_the_file(tmp_path, lake):
    parquet = tmp_path / "patients.parquet"
    lake["frame"].to_parquet(parquet)
    sql = ("SELECT sex, count(*) AS n, avg(bmi) AS mean_bmi, var_samp(age) AS var_age, sum(systolic_bp) AS s"
           " FROM data WHERE age >= ? AND smoker = ? GROUP BY sex ORDER BY sex")
    remote = SparkEngine(MASTER, lake["table"]).query(sql, (40, True))
    con = duckdb.connect()
    con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet('{parquet}')")
    local = con.execute(sql, [40, True]).df()
    assert remote["n"].tolist() == local["n"].tolist()
    for column in ("mean_bmi", "var_age", "s"):
        np.testing.assert_allclose(remote[column].astype(float), local[column].astype(float), rtol=1e-9)
    assert SparkEngine(MASTER, lake["table"]).columns()["age"] == "BIGINT"


def test_hostile_sql_is_refused_and_values_stay_parameters(lake, tmp_path):
    engine = SparkEngine(MASTER, lake["table"])
    other = tmp_path / "other"
    session(MASTER).createDataFrame(pd.DataFrame({"salary": [1.0]})).write.parquet(str(other))
    for hostile in ("DROP TABLE data", f"SELECT * FROM parquet.`{other}`", "INSERT INTO data VALUES (1)",
                    "SELECT count(*) FROM data; DELETE FROM data", "SELECT * FROM read_files('/etc')"):
        with pytest.raises(EngineError, match="only|could not be read"):
            engine.query(hostile)
    injected = engine.query("SELECT count(*) AS n FROM data WHERE sex = ?", ("F' OR '1'='1",))
    assert int(injected["n"].iloc[0]) == 0
    with pytest.raises(EngineError, match="table name"):
        SparkEngine(MASTER, "patients; DROP TABLE x")


def test_a_slow_query_is_stopped_with_a_readable_message(lake):
    # 800³ row triples, streamed through the tasks: longer than 0.3 s anywhere, and bounded (a
    # four-way product would build a 800³-row broadcast on the driver that no cancel reaches)
    slow = SparkEngine(MASTER, lake["table"], timeout_seconds=0.3)
    with pytest.raises(EngineError, match="did not answer within 0.3 s"):
        slow.query("SELECT count(*) AS n FROM data a, data b, data c WHERE a.age * b.bmi > c.age + c.bmi")
    # the session still serves the next query (with room for the cancelled tasks to wind down on a busy machine)
    assert SparkEngine(MASTER, lake["table"], timeout_seconds=300).row_count() == len(lake["frame"])


def test_an_unreachable_spark_and_a_cast_error_say_what_failed_without_rows(lake):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EngineError, match="cannot be reached|connection"):
        SparkEngine(f"sc://127.0.0.1:{port}", "patients", timeout_seconds=5).row_count()
    with pytest.raises(EngineError, match="CAST_INVALID_INPUT") as failed:
        SparkEngine(MASTER, lake["table"], timeout_seconds=300).query("SELECT sum(CAST(sex AS BIGINT)) AS s FROM data")
    assert "'F'" not in str(failed.value) and "'M'" not in str(failed.value)


def test_each_builtin_on_spark_equals_the_parquet_copy(tmp_path):
    from fednb.domain.data.engines.factory import open_engine
    from fednb.domain.release.disclosure import Blocked
    from fednb.domain.review.policy import DisclosureSection, EngineSection
    from fednb.domain.run import builtins
    from tests.test_engine import LEVELS, awkward
    from tests.test_postgres_datasets import PARITY_CALLS, assert_same

    df = awkward()
    df["died"] = (df["visits"] % 3 == 0).astype("int64")
    folder = tmp_path / "datasets" / "awkward"
    folder.mkdir(parents=True)
    df.to_parquet(folder / "data.parquet", index=False)
    spark_copy = df.astype({"diagnosis": object, "smoker": object})
    spark_copy["smoker"] = spark_copy["smoker"].where(spark_copy["smoker"].notna(), None)
    session(MASTER).createDataFrame(spark_copy).write.parquet(str(tmp_path / "lake"))
    local = open_engine(folder, EngineSection(memory_limit="256MB", threads=1))
    remote = SparkEngine(MASTER, f"parquet.`{tmp_path / 'lake'}`", timeout_seconds=600)  # a loaded CI machine
    where = [{"column": "blood pressure", "op": ">", "value": 110}]
    for name, args in PARITY_CALLS:
        contexts = [builtins.Context(DisclosureSection(), LEVELS) for _ in range(2)]
        expected, got = (builtins.compute(name, {**args, "where": where}, engine, ctx)
                         for engine, ctx in zip((local, remote), contexts))
        assert_same(got, expected, f"{name} {args}")
        assert contexts[1].evidence["rows"]["rows"] == contexts[0].evidence["rows"]["rows"], name
    refusals = []
    for engine in (local, remote):
        with pytest.raises(Blocked) as refused:
            builtins.compute("count", {"where": [{"column": "visits", "op": "==", "value": 8}]}, engine,
                             builtins.Context(DisclosureSection(min_cohort=100), LEVELS))
        refusals.append(str(refused.value))
    assert refusals[0] == refusals[1]
    local.close()
