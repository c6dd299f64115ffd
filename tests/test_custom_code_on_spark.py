"""The rows a custom job is given from a table in the owner's Spark: read through the dataset's engine
(a real ``local[2]`` Spark), only the declared columns, the owner's row cap counted in Spark first.
The hand-off to the sandbox is the same as for PostgreSQL (tests/test_custom_code_on_postgres.py)."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("pyspark", reason="the 'spark' extra is not installed (pip install -e '.[spark]', and Java)")

from fednb.demo import data  # noqa: E402
from fednb.domain.data.engines.spark import SparkEngine, session  # noqa: E402
from fednb.domain.review.policy import Policy, load_policy, render_template  # noqa: E402
from fednb.domain.run.job_data import RowsNotLoaded, bounded_count, read_columns  # noqa: E402

pytestmark = pytest.mark.timeout(600)
MASTER = "local[2]"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    frame = data.hospital("hospital-b").head(500).reset_index(drop=True)
    folder = tmp_path_factory.mktemp("lake") / "patients"
    session(MASTER).createDataFrame(frame).coalesce(1).write.parquet(str(folder))
    # a generous timeout: the read is what is tested here, not how fast a busy machine runs Spark
    return {"engine": SparkEngine(MASTER, f"parquet.`{folder}`", timeout_seconds=300), "frame": frame}


def _policy(cap: int, tmp_path) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(render_template("d").replace("max_rows_loaded = 0", f"max_rows_loaded = {cap}"))
    return load_policy(path)


def test_a_job_gets_only_the_declared_columns_of_a_spark_table(lake, tmp_path):
    got = read_columns(lake["engine"], ["bmi", "age"], _policy(0, tmp_path))
    expected = lake["frame"][["bmi", "age"]]
    assert list(got.columns) == ["bmi", "age"]
    pd.testing.assert_frame_equal(got.sort_values(["age", "bmi"]).reset_index(drop=True),
                                  expected.sort_values(["age", "bmi"]).reset_index(drop=True), check_dtype=False)


def test_a_spark_table_over_the_cap_is_refused_from_a_bounded_count(lake, tmp_path):
    assert bounded_count(lake["engine"], 101) == 101
    with pytest.raises(RowsNotLoaded, match=r"custom code load \(100,"):
        read_columns(lake["engine"], ["age"], _policy(100, tmp_path))
    assert len(read_columns(lake["engine"], ["age"], _policy(500, tmp_path))) == 500
