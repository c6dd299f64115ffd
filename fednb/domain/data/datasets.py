"""Registering an owner's CSV or Parquet file as a dataset, and loading it back.

The file is copied into the domain folder as Parquet (``datasets/NAME/data.parquet``, the only
private data a job can read) next to its mock (``datasets/NAME/mock.parquet``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from fednb.domain.data import mock as mocks
from fednb.domain.data import mock_review
from fednb.domain.review.policy import Policy
from fednb.errors import InvalidInput
from fednb.models import Column, Dataset

DATA_FILE = "data.parquet"
MOCK_FILE = "mock.parquet"


def read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"could not read {path}: {exc}") from None
    raise InvalidInput(f"{path}: only .csv and .parquet files can be registered")


def rounded(n: int, step: int) -> int:
    """Row counts are shown rounded so that adding one person is not visible in a listing."""
    return int(round(n / step) * step)


def has_missing(s: pd.Series, k: int) -> bool:
    """Missingness is shown like a table cell: only when at least ``k`` rows lack a value, so the
    listing never says that one patient's bmi is missing. Analysts' code must expect missing values
    in any column (the built-ins drop them and count them in ``n``)."""
    return int(s.isna().sum()) >= k


def describe(name: str, description: str, df: pd.DataFrame, policy: Policy) -> Dataset:
    k = policy.disclosure.min_cell_count
    columns = []
    for col in df.columns:
        s = df[col]
        kind = mocks.column_kind(s)
        columns.append(Column(
            name=str(col), dtype=str(s.dtype), kind=kind,
            levels=mocks.revealed_levels(s, k) if mocks.has_levels(s, kind) else None,
            range=mocks.public_range(s, k) if kind in ("integer", "numeric") else None,
            missing=has_missing(s, k),
        ))
    return Dataset(name=name, description=description,
                   rows=rounded(len(df), policy.disclosure.round_counts_to), columns=columns)


LARGE_FILE_BYTES = 64 * 2**20  # above this a file is converted by DuckDB and described in SQL
SAMPLE_ROWS = 200_000  # rows a large dataset's mock and column kinds are drawn from


def register(domain_dir: Path, source: Path, name: str, description: str, policy: Policy,
             *, seed: int = 0) -> tuple[Dataset, Path, int]:
    """Copy ``source`` into the domain as Parquet, write its mock; returns (public metadata, data
    file, exact row count). A file over ``LARGE_FILE_BYTES`` never enters pandas whole: DuckDB
    converts it, and its mock and column kinds come from a sample (see :func:`_convert_large`)."""
    large = source.stat().st_size > LARGE_FILE_BYTES
    folder = domain_dir / "datasets" / name
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if large:
        df, rows, full = _convert_large(domain_dir, source, tmp / DATA_FILE, policy, seed)
    else:
        df = read_table(source)
        if df.empty:
            raise InvalidInput(f"{source} has no rows")
        if any(not isinstance(c, str) for c in df.columns):
            df.columns = [str(c) for c in df.columns]
        df.to_parquet(tmp / DATA_FILE, index=False)
        rows, full = len(df), None
    meta = describe(name, description, df, policy)
    if full is not None:
        try:
            _describe_in_full(meta, full, rows, policy)
        finally:
            full.close()
    mock, report = mock_review.build(df, name, policy, seed)
    mock.to_parquet(tmp / MOCK_FILE, index=False)
    (tmp / mock_review.REPORT_FILE).write_text(json.dumps(report, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    meta.mock = mock_review.initial_state(report)
    return meta, folder / DATA_FILE, rows


def _convert_large(domain_dir: Path, source: Path, target: Path, policy: Policy, seed: int):
    """CSV or Parquet -> ``target`` through DuckDB, out of core under ``[engine] memory_limit``;
    returns (a random sample as pandas, the exact row count, the engine over the new file).

    The sample is safe to build a mock from: a level or combination shared by ``k`` rows of the
    sample is shared by at least ``k`` rows of the table, so what the mock may show is only ever
    less than what the full table would allow."""
    import duckdb

    from fednb.domain.data.engines.duckdb import SPILL_FOLDER, ParquetEngine

    suffix = source.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise InvalidInput(f"{source}: only .csv and .parquet files can be registered")
    literal = "'" + str(source).replace("'", "''") + "'"
    out = "'" + str(target).replace("'", "''") + "'"
    spill = domain_dir / SPILL_FOLDER
    spill.mkdir(mode=0o700, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": policy.engine.memory_limit, "threads": policy.engine.threads,
                                 "temp_directory": str(spill), "preserve_insertion_order": True})
    try:
        reader = f"read_parquet({literal})" if suffix != ".csv" else f"read_csv({literal}, sample_size = 100000)"
        con.execute(f"COPY (SELECT * FROM {reader}) TO {out} (FORMAT parquet, ROW_GROUP_SIZE 122880)")
    except duckdb.Error as exc:
        raise InvalidInput(f"could not read {source}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    engine = ParquetEngine(target, memory_limit=policy.engine.memory_limit, threads=policy.engine.threads,
                           spill_directory=spill)
    rows = engine.row_count()
    if rows == 0:
        engine.close()
        raise InvalidInput(f"{source} has no rows")
    return engine.sample(SAMPLE_ROWS, seed), rows, engine


def _describe_in_full(meta: Dataset, engine, rows: int, policy: Policy) -> None:
    """Row count, public levels and missingness from every row (a sample would miss rare gaps)."""
    from fednb.domain.data.engines.sql import quote

    k = policy.disclosure.min_cell_count
    meta.rows = rounded(rows, policy.disclosure.round_counts_to)
    for c in meta.columns:
        ident = quote(c.name)
        missing = int(engine.query(f"SELECT count(*) - count({ident}) FROM data").iloc[0, 0])
        c.missing = missing >= k
        if c.levels is not None:
            counts = engine.query(f"SELECT {ident} AS v FROM data WHERE {ident} IS NOT NULL "
                                  f"GROUP BY {ident} HAVING count(*) >= ? ORDER BY {ident}", [k])
            c.levels = [v.item() if hasattr(v, "item") else v for v in counts["v"]]
