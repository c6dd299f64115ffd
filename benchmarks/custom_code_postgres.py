"""What a custom job on a PostgreSQL table costs before it starts: the domain reading the declared
columns through the dataset's engine (``fednb.domain.run.job_data.read_columns``: the cap's bounded
count, then the rows in row-id order) and writing the job's private Parquet copy, against plain
psycopg + pandas doing the same read and write (``COPY (SELECT ...) TO STDOUT`` as CSV into
``pandas.read_csv``, no order, no cap), each in a fresh process whose peak memory above its start is
reported (``peak_mb``: what the serving process would carry). Also the bounded count alone on a table far over the cap: it
stays flat as the table grows, because the store stops at cap + 1 rows.

The table is pushdown_parity.py's (an id, a 5-level category, three floats, two integers), loaded
into a throwaway PostgreSQL server (tests/postgres_server.py). Prints JSON lines.

    python benchmarks/custom_code_postgres.py --rows 100000 --rows 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pushdown_parity import load_postgres, make_frame  # noqa: E402

COLUMN_SETS = {"one": ["x1"], "all": ["id", "g", "x1", "x2", "x3", "k", "y"]}
CAP = 10_000


def policy(cap: int, folder: Path):
    from fednb.domain.review.policy import load_policy, render_template

    path = folder / f"policy-{cap}.toml"
    path.write_text(render_template("bench").replace("max_rows_loaded = 0", f"max_rows_loaded = {cap}"))
    return load_policy(path)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measured(fn, *args) -> tuple[int, float, int]:
    """(rows, seconds, peak MB above the start) of ``fn(*args)`` run in a forked process."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as pool:
        return pool.submit(_in_child, fn, *args).result()


def _in_child(fn, *args) -> tuple[int, float, int]:
    import resource

    import pandas  # noqa: F401  (imported before the baseline: both sides use it)
    import psycopg  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rows, seconds = timed(lambda: fn(*args))
    return rows, seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024


def domain_read(url: str, columns: list[str], rules, target: Path) -> int:
    from fednb.domain.data.engines.postgres import PostgresEngine
    from fednb.domain.run.job_data import read_columns

    engine = PostgresEngine(url, "t", timeout_seconds=600)
    try:
        frame = read_columns(engine, columns, rules).reset_index(drop=True)
    finally:
        engine.close()
    frame.to_parquet(target, index=False)
    return len(frame)


def plain_read(url: str, columns: list[str], target: Path) -> int:
    import pandas as pd
    import psycopg

    sink = io.BytesIO()
    with psycopg.connect(url) as conn, conn.cursor().copy(
            f"COPY (SELECT {', '.join(columns)} FROM t) TO STDOUT WITH (FORMAT csv)") as copy:
        for chunk in copy:
            sink.write(chunk)
    sink.seek(0)
    frame = pd.read_csv(sink, names=columns)
    frame.to_parquet(target, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    options = parser.parse_args()
    from fednb.domain.data.engines.postgres import PostgresEngine
    from fednb.domain.run.job_data import bounded_count
    from tests.postgres_server import create_database, running_postgres

    with tempfile.TemporaryDirectory() as tmp, running_postgres(Path(tmp) / "pg") as admin:
        folder = Path(tmp)
        uncapped = policy(0, folder)
        for i, rows in enumerate(options.rows or [100_000]):
            url = create_database(admin, f"bench{i}")
            load_postgres(url, make_frame(rows), folder)
            for label, columns in COLUMN_SETS.items():
                got, seconds, peak = measured(domain_read, url, columns, uncapped, folder / "domain.parquet")
                plain, plain_seconds, plain_peak = measured(plain_read, url, columns, folder / "plain.parquet")
                print(json.dumps({"rows": rows, "columns": label, "seconds": round(seconds, 4),
                                  "plain_seconds": round(plain_seconds, 4), "peak_mb": peak, "plain_peak_mb": plain_peak,
                                  "same_rows": got == plain == rows}), flush=True)
            engine = PostgresEngine(url, "t", timeout_seconds=600)
            counted, seconds = timed(lambda: bounded_count(engine, CAP + 1))
            full, full_seconds = timed(engine.row_count)
            engine.close()
            print(json.dumps({"rows": rows, "bounded_count_to": CAP + 1, "counted": counted,
                              "seconds": round(seconds, 4), "full_count_seconds": round(full_seconds, 4),
                              "full_count": full}), flush=True)


if __name__ == "__main__":
    main()
