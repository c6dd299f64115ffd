"""The built-ins on a table that stays in PostgreSQL or Spark, against the same built-ins on the
domain's Parquet copy and against plain psycopg / pyspark running the equivalent query.

For each size the script generates one table (an id, a category ``g`` with 5 levels, three numbers,
a small integer ``k`` and a 0/1 outcome ``y``), loads it into a throwaway PostgreSQL server
(tests/postgres_server.py) and, with ``--spark``, into a Parquet folder read by a local Spark, and
writes the domain's Parquet copy. Each built-in runs through its engine exactly as a domain's worker
runs it (``builtins.compute``: the SQL aggregate plus the row ids the differencing defence keeps);
``plain`` is the aggregate alone through the bare client, the floor for any push-down. ``parity``
says whether the result equals the Parquet engine's (counts exactly, floats to 1e-9 relative).
Prints JSON lines.

    python benchmarks/pushdown_parity.py --rows 100000 --rows 1000000 [--spark]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BUILTINS = [
    ("count", {}, "SELECT count(*) FROM {t} WHERE k >= -1"),
    ("mean", {"column": "x1"}, "SELECT count(x1), avg(x1) FROM {t} WHERE k >= -1"),
    ("variance", {"column": "x2"}, "SELECT count(x2), avg(x2), var_samp(x2) FROM {t} WHERE k >= -1"),
    ("histogram", {"column": "x1", "bins": [-1.0, 0.0, 1.0]},
     "SELECT CASE WHEN x1 < -1 THEN 0 WHEN x1 < 0 THEN 1 WHEN x1 < 1 THEN 2 ELSE 3 END AS b, count(*)"
     " FROM {t} WHERE k >= -1 GROUP BY 1"),
    ("crosstab", {"row": "g", "col": "k"}, "SELECT g, k, count(*) FROM {t} WHERE k >= -1 GROUP BY g, k"),
    ("glm", {"formula": "y ~ x1 + x2 + x3", "family": "gaussian"}, "SELECT y, x1, x2, x3 FROM {t} WHERE k >= -1"),
]
LEVELS = {"g": ["a", "b", "c", "d", "e"], "k": [0, 1, 2, 3]}
WHERE = [{"column": "k", "op": ">=", "value": -1}]


def make_frame(rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    x1, x2, x3 = rng.normal(size=(3, rows))
    return pd.DataFrame({"id": np.arange(rows), "g": rng.choice(LEVELS["g"], rows), "x1": x1, "x2": x2, "x3": x3,
                         "k": rng.integers(0, 4, rows), "y": (x1 + rng.normal(size=rows) > 0).astype("int64")})


def load_postgres(url: str, frame, folder: Path) -> None:
    import psycopg

    csv = folder / "t.csv"
    frame.to_csv(csv, index=False, header=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id bigint, g text, x1 double precision, x2 double precision,"
                     " x3 double precision, k bigint, y bigint)")
        with conn.cursor().copy("COPY t FROM STDIN WITH (FORMAT csv)") as copy, open(csv, "rb") as f:
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        conn.execute("ANALYZE t")
    csv.unlink()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def same(a: dict, b: dict) -> bool:
    import numpy as np

    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(y, float) or (isinstance(y, list) and y and isinstance(np.asarray(y).flat[0], np.floating | float)):
            if not np.allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-9, atol=0):
                return False
        elif x != y:
            return False
    return True


def run_builtins(store: str, rows: int, engine, reference: dict | None, plain) -> dict:
    from fednb.domain.review.policy import DisclosureSection
    from fednb.domain.run import builtins

    results = {}
    for name, args, sql in BUILTINS:
        ctx = builtins.Context(DisclosureSection(), LEVELS)
        result, seconds = timed(lambda: builtins.compute(name, {**args, "where": WHERE}, engine, ctx))
        results[name] = result
        line = {"store": store, "rows": rows, "builtin": name, "seconds": round(seconds, 4)}
        if plain is not None:
            line["plain_seconds"] = round(timed(lambda: plain(sql))[1], 4)
        if reference is not None:
            line["parity"] = same(result, reference[name])
        print(json.dumps(line), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--spark", action="store_true", help="also a local[2] Spark (starting it takes seconds)")
    options = parser.parse_args()
    from fednb.domain.data.engines.factory import open_engine
    from fednb.domain.data.engines.postgres import PostgresEngine
    from fednb.domain.review.policy import EngineSection
    from tests.postgres_server import create_database, running_postgres

    with tempfile.TemporaryDirectory() as tmp, running_postgres(Path(tmp) / "pg") as admin:
        for i, rows in enumerate(options.rows or [100_000]):
            frame = make_frame(rows)
            folder = Path(tmp) / f"d{i}" / "datasets" / "t"
            folder.mkdir(parents=True)
            frame.to_parquet(folder / "data.parquet", index=False)
            url = create_database(admin, f"bench{i}")
            load_postgres(url, frame, Path(tmp))
            local = open_engine(folder, EngineSection(memory_limit="1GB", threads=2))
            reference = run_builtins("parquet", rows, local, None,
                                     lambda sql: local.query(sql.format(t="data")))
            import psycopg

            with psycopg.connect(url) as bare:
                engine = PostgresEngine(url, "t", timeout_seconds=600)
                run_builtins("postgresql", rows, engine, reference,
                             lambda sql, bare=bare: bare.execute(sql.format(t="t")).fetchall())
                engine.close()
            if options.spark:
                from fednb.domain.data.engines.spark import SparkEngine, session

                lake = Path(tmp) / f"lake{i}"
                spark = session("local[2]")
                spark.createDataFrame(frame).write.parquet(str(lake))
                source = f"parquet.`{lake}`"
                run_builtins("spark", rows, SparkEngine("local[2]", source, timeout_seconds=1800), reference,
                             lambda sql, spark=spark, source=source: spark.sql(sql.format(t=source)).collect())
            local.close()


if __name__ == "__main__":
    main()
