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


def register(domain_dir: Path, source: Path, name: str, description: str, policy: Policy,
             *, seed: int = 0) -> tuple[Dataset, Path, int]:
    """Copy ``source`` into the domain as Parquet, write its mock; returns (public metadata, data
    file, exact row count)."""
    df = read_table(source)
    if df.empty:
        raise InvalidInput(f"{source} has no rows")
    if any(not isinstance(c, str) for c in df.columns):
        df.columns = [str(c) for c in df.columns]
    folder = domain_dir / "datasets" / name
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    df.to_parquet(tmp / DATA_FILE, index=False)
    mock, report = mock_review.build(df, name, policy, seed)
    mock.to_parquet(tmp / MOCK_FILE, index=False)
    (tmp / mock_review.REPORT_FILE).write_text(json.dumps(report, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    meta = describe(name, description, df, policy)
    meta.mock = mock_review.initial_state(report)
    return meta, folder / DATA_FILE, len(df)
