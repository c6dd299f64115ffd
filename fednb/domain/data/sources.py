"""Registering a dataset whose rows stay in the owner's own store: a PostgreSQL table or a Spark table.

Nothing is copied. The dataset's folder holds ``source.json`` (which engine, which table; no
secret), ``connection.secret`` (the URL with the domain's read-only credentials, mode 0600: the
sandbox's user cannot read it; never in the audit log, a listing, an error or a request), the mock
and its report. The metadata follows the same rules as a file's (:func:`datasets.describe`), but
each rule is one aggregate query run in the store, so it is exact without loading the table: the
levels seen at least ``k`` times, the ``k``-th smallest and largest values for the public range,
missingness shown only when ``k`` rows lack a value. Column kinds come from a sample, and the mock
is built from a sample of at most ``SAMPLE_ROWS`` rows drawn in the store.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from fednb.domain.data import columns as cols
from fednb.domain.data import mock_review
from fednb.domain.data.datasets import MOCK_FILE, rounded
from fednb.domain.data.engines.base import SOURCE_FILE, Engine, EngineError
from fednb.domain.review.policy import Policy
from fednb.errors import InvalidInput
from fednb.models import Column, Dataset

SECRET_FILE = "connection.secret"
SAMPLE_ROWS = 20_000
STATEMENT_SECONDS = 15.0
# Registration reads the whole table a few times (one aggregate per column); it may take longer
# than one built-in may.
REGISTER_TIMEOUT_SECONDS = 600.0
ENGINES = ("postgresql", "spark")


def open_source(folder: Path, source: dict[str, Any], settings: Any = None) -> Engine:
    """The engine for a dataset folder holding ``source.json`` (the factory's entry for every kind
    that is not a file). The store itself stops a query after ``STATEMENT_SECONDS``, before the
    built-in's worker would be killed (``requests.builtin_wall_seconds``, 20 by default), so the
    analyst reads why instead of a worker that vanished mid-query."""
    url = (folder / SECRET_FILE).read_text().strip()
    return connect(source["engine"], url, source["table"], STATEMENT_SECONDS)


def connect(engine: str, url: str, table: str, timeout_seconds: float) -> Engine:
    if engine == "postgresql":
        from fednb.domain.data.engines.postgres import PostgresEngine

        return PostgresEngine(url, table, timeout_seconds=timeout_seconds)
    if engine == "spark":
        from fednb.domain.data.engines.spark import SparkEngine

        return SparkEngine(url, table, timeout_seconds=timeout_seconds)
    raise InvalidInput(f"unknown dataset engine {engine!r}; this domain knows {', '.join(ENGINES)}")


def kind_of(url: str) -> str:
    """Which engine a ``--sql`` or ``--spark`` URL names (checked before anything connects)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql"
    if url.startswith(("local", "spark://", "sc://")):
        return "spark"
    raise InvalidInput("the source must be a postgresql://USER@HOST/DB URL, or a Spark master: "
                       "local[N], spark://HOST:PORT or sc://HOST:PORT")


def register(domain_dir: Path, engine_name: str, url: str, table: str, name: str, description: str,
             policy: Policy, *, seed: int = 0) -> tuple[Dataset, Path, int]:
    """Describe the table in its store and write the dataset folder; returns (public metadata,
    ``source.json``, exact row count)."""
    engine = None
    try:
        engine = connect(engine_name, url, table, REGISTER_TIMEOUT_SECONDS)
        _refuse_writable(engine, table)
        rows = engine.row_count()
        if rows == 0:
            raise InvalidInput(f"table {table!r} has no rows")
        sample = engine.sample(SAMPLE_ROWS, seed)
        meta = describe(engine, name, description, sample, rows, policy)
        mock, report = mock_review.build(sample, name, policy, seed)
    except EngineError as exc:
        raise InvalidInput(f"table {table!r}: {exc}") from None
    finally:
        if engine is not None:
            engine.close()
    folder = domain_dir / "datasets" / name
    tmp = folder.with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    secret = os.open(tmp / SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(secret, "w") as f:
        f.write(url + "\n")
    (tmp / SOURCE_FILE).write_text(json.dumps({"engine": engine_name, "table": table}, indent=1))
    mock.to_parquet(tmp / MOCK_FILE, index=False)
    (tmp / mock_review.REPORT_FILE).write_text(json.dumps(report, indent=1))
    for f in tmp.iterdir():
        f.chmod(0o600 if f.name == SECRET_FILE else 0o644)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    meta.mock = mock_review.initial_state(report)
    return meta, folder / SOURCE_FILE, rows


def _refuse_writable(engine: Engine, table: str) -> None:
    can = getattr(engine, "writable", None)
    powers = can() if can else []
    if powers:
        raise InvalidInput(
            f"the domain's credentials can change the database ({', '.join(powers)}); give the domain a "
            f"read-only role instead: CREATE ROLE fednb_reader LOGIN PASSWORD '...'; "
            f"GRANT CONNECT ON DATABASE ... TO fednb_reader; GRANT USAGE ON SCHEMA ... TO fednb_reader; "
            f"GRANT SELECT ON {table} TO fednb_reader")


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def describe(engine: Engine, name: str, description: str, sample: pd.DataFrame, rows: int,
             policy: Policy) -> Dataset:
    """The listing's metadata, with the rules :func:`fednb.domain.data.datasets.describe` applies to
    a file, each computed exactly in the store (a few queries for the whole table, not one per rule:
    each query on a cluster costs a job)."""
    k = policy.disclosure.min_cell_count
    names = [str(c) for c in sample.columns]
    facts = _counts(engine, names)
    kinds = {c: _kind(sample[c], facts[c][1]) for c in names}
    ranged = [c for c in names if kinds[c] in ("integer", "numeric") and facts[c][0] >= 2 * k]
    ends = _kth_values(engine, ranged, k)
    described = []
    for c in names:
        present, distinct = facts[c]
        kind = kinds[c]
        levels = None
        if kind in ("categorical", "boolean") or (kind == "integer" and distinct <= cols.CODE_LEVELS):
            levels = _levels(engine, c, k)
        public = None
        if c in ends:
            lo, hi = cols.nice_floor(float(ends[c][0])), cols.nice_ceil(float(ends[c][1]))
            public = [lo, hi if hi > lo else lo + 1.0]
        described.append(Column(name=c, dtype=str(sample[c].dtype), kind=kind, levels=levels, range=public,
                                missing=rows - present >= k))
    return Dataset(name=name, description=description, rows=rounded(rows, policy.disclosure.round_counts_to),
                   columns=described)


def _counts(engine: Engine, names: list[str]) -> dict[str, tuple[int, int]]:
    """Each column's non-missing and distinct counts, in one query."""
    parts = [f"count({_quoted(c)}) AS p{i}, count(DISTINCT {_quoted(c)}) AS d{i}" for i, c in enumerate(names)]
    found = engine.query(f"SELECT {', '.join(parts)} FROM data").iloc[0]
    return {c: (int(found[f"p{i}"]), int(found[f"d{i}"])) for i, c in enumerate(names)}


def _kth_values(engine: Engine, names: list[str], k: int) -> dict[str, tuple[Any, Any]]:
    """The k-th smallest and k-th largest value of each column (the public range's ends, before
    rounding outwards), in one query."""
    if not names:
        return {}
    parts, params = [], []
    for i, c in enumerate(names):
        for end, order in (("lo", "ASC"), ("hi", "DESC")):
            parts.append(f"(SELECT {_quoted(c)} FROM data WHERE {_quoted(c)} IS NOT NULL "
                         f"ORDER BY {_quoted(c)} {order} LIMIT 1 OFFSET ?) AS {end}{i}")
            params.append(k - 1)
    found = engine.query(f"SELECT {', '.join(parts)}", params).iloc[0]
    return {c: (found[f"lo{i}"], found[f"hi{i}"]) for i, c in enumerate(names)}


def _kind(sample: pd.Series, distinct: int) -> str:
    """As :func:`columns.column_kind`, with the exact distinct count in place of the sample's."""
    kind = cols.column_kind(sample)
    if kind in ("categorical", "text"):
        return "categorical" if distinct <= cols.TEXT_LEVELS else "text"
    return kind


def _levels(engine: Engine, column: str, k: int) -> list[Any]:
    c = _quoted(column)
    found = engine.query(f"SELECT {c} AS level FROM data WHERE {c} IS NOT NULL GROUP BY {c} HAVING count(*) >= ?",
                         (k,))
    return cols.sort_levels([v.item() if hasattr(v, "item") else v for v in found["level"].tolist()])


def add_to_domain(domain: Any, url: str, table: str, name: str, description: str = "") -> Dataset:
    """``fednb domain add-dataset DIR NAME --sql URL --table T`` (or ``--spark``): register, then
    record the dataset and its audit row in one transaction. The audit row names the engine and the
    table, never the URL."""
    import hashlib

    from fednb.domain.audit import log as audit
    from fednb.domain.names import check_name, owner_actor
    from fednb.domain.store import datasets as dataset_rows

    check_name("dataset name", name)
    engine_name = kind_of(url)
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    meta, source_file, rows = register(domain.path, engine_name, url, table, name, description, domain.policy,
                                       seed=seed)
    kept = domain.bounds(name) if dataset_rows.exists(domain.store.connect(), name) else {}
    for c in meta.columns:  # re-registering a dataset keeps the owner's bounds
        if c.name in kept and c.kind in ("numeric", "integer", "boolean"):
            c.bounds = kept[c.name]
    with domain.store.transaction() as tx:
        dataset_rows.put_ready(tx, name, str(source_file.relative_to(domain.path)), engine_name,
                               meta.model_dump_json(), rows)
        audit.append(tx, owner_actor(), "dataset", name,
                     {"rows": meta.rows, "columns": [c.name for c in meta.columns], "description": description,
                      "source": {"engine": engine_name, "table": table},
                      "mock": {k: meta.mock[k] for k in ("tier", "status", "report_sha256")} if meta.mock else None})
    domain.changed()
    return meta
