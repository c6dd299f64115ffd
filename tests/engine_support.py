"""A dataset written to Parquet and opened in the domain's engine, for the tests that compare a
built-in computed in the engine with the same built-in in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fednb.domain.data.engines.duckdb import ParquetEngine


@contextlib.contextmanager
def parquet_engine(folder: Path, frame: pd.DataFrame, memory_limit: str = "128MB") -> Iterator[ParquetEngine]:
    """``frame`` as ``folder/data.parquet`` (no index: row ids are row positions, as a registered
    dataset's) in a one-thread engine under ``memory_limit``, closed on the way out."""
    path = folder / "data.parquet"
    frame.to_parquet(path, index=False)
    engine = ParquetEngine(path, memory_limit=memory_limit, threads=1)
    try:
        yield engine
    finally:
        engine.close()
