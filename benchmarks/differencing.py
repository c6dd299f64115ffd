"""Cost of the differencing defence: memory per remembered release, time per check.

The domain keeps the row set of every exact release (a Roaring bitmap, in the store) and checks a
new release against those within ``min_cohort`` rows of its size. This fills a real store (the
``released_rows`` table, as the domain writes it) with ``--releases`` row sets of a ``--rows``-row
dataset, each the rows of a ``where`` filter (``x < t`` on a random column, so the sets are random
subsets of every density), then times the check of new releases, in the same run as two plain
baselines: the same sets as NumPy boolean masks (memory), and a check that reads every remembered
bitmap (no size index).

    python benchmarks/differencing.py [--rows 1000000] [--releases 10000] [--checks 50]

Prints JSON lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pyroaring import BitMap

from fednb.domain.release import differencing

MIN_COHORT = 10


def _store(path: Path) -> sqlite3.Connection:
    """A domain store's tables (fednb.domain.store.schema) in a fresh SQLite file."""
    import sqlalchemy as sa

    from fednb.domain.store.schema import metadata

    metadata.create_all(sa.create_engine(f"sqlite:///{path}"))
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random(args.rows)  # a column; "x < t" selects a random subset of density t
    thresholds = rng.uniform(0.001, 1.0, args.releases)
    with tempfile.TemporaryDirectory() as tmp:
        conn = _store(Path(tmp) / "domain.db")
        bitmap_bytes, mask_bytes, encode_s = [], args.rows, []
        for i, t in enumerate(thresholds):
            ids = np.flatnonzero(x < t)
            if i < args.checks:  # what a built-in pays to record its rows (hash, base64 for the worker)
                start = time.perf_counter()
                differencing.evidence(ids)
                encode_s.append(time.perf_counter() - start)
            blob = differencing.roaring(ids).serialize()
            bitmap_bytes.append(len(blob))
            conn.execute("INSERT INTO released_rows (dataset, request_id, job_id, rows, rows_sha256, cell, bitmap,"
                         " container_sizes, created_at) VALUES ('d', ?, ?, ?, ?, 0, ?, ?, 0)",
                         (f"r{i}", i, len(ids), hashlib.sha256(blob).hexdigest(), blob,
                          differencing.container_sizes(blob)))
            if i % 1000 == 999:
                conn.commit()
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db_bytes = sum(f.stat().st_size for f in Path(tmp).iterdir())
        print(json.dumps({"benchmark": "differencing_memory", "rows": args.rows, "releases": args.releases,
                          "bitmap_bytes_mean": int(statistics.mean(bitmap_bytes)),
                          "bitmap_bytes_max": max(bitmap_bytes), "store_bytes_per_release": db_bytes // args.releases,
                          "numpy_bool_mask_bytes": mask_bytes, "encode_ms_median": round(1000 * statistics.median(encode_s), 2)}))
        # new releases: one a few rows off a remembered set (caught), one new (passes)
        check_s, naive_s, caught = [], [], 0
        for j in range(args.checks):
            t = thresholds[j]
            near = np.flatnonzero(x < t)
            near = near[: max(len(near) - 1 - j % 5, 0)]
            fresh = np.flatnonzero(x < rng.uniform(0.001, 1.0))
            for ids in (near, fresh):
                rows = differencing.evidence(ids)
                start = time.perf_counter()
                hit = differencing.closest(conn, "d", rows, cell=False, min_cohort=MIN_COHORT, min_cell=5)
                check_s.append(time.perf_counter() - start)
                caught += hit is not None and ids is near
            if j < 3:  # the plain way: compare with every remembered set
                new = differencing.roaring(near)
                start = time.perf_counter()
                for (blob,) in conn.execute("SELECT bitmap FROM released_rows WHERE dataset = 'd'"):
                    new.symmetric_difference_cardinality(BitMap.deserialize(bytes(blob)))
                naive_s.append(time.perf_counter() - start)
        print(json.dumps({"benchmark": "differencing_check", "rows": args.rows, "releases": args.releases,
                          "checks": len(check_s), "near_misses_caught": caught, "near_misses": args.checks,
                          "check_ms_median": round(1000 * statistics.median(check_s), 2),
                          "check_ms_max": round(1000 * max(check_s), 2),
                          "scan_all_ms_median": round(1000 * statistics.median(naive_s), 1)}))
        conn.close()


if __name__ == "__main__":
    main()
