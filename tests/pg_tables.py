"""Putting a DataFrame into a real PostgreSQL database as an owner would keep it, with the
read-only role a domain is given (used by the PostgreSQL dataset tests and the push-down benchmark)."""

from __future__ import annotations

import pandas as pd

PG_TYPES = {"int64": "bigint", "float64": "double precision", "bool": "boolean", "boolean": "boolean",
            "object": "text", "category": "text", "datetime64[ns]": "timestamp"}


def _name(column: str) -> str:
    return '"' + str(column).replace('"', '""') + '"'


def _value(v):
    if v is None or v is pd.NA or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    return v.item() if hasattr(v, "item") else v


def write_table(url: str, table: str, frame: pd.DataFrame) -> None:
    """``CREATE TABLE table`` with ``frame``'s columns and rows (COPY, so a million rows take seconds)."""
    import psycopg

    columns = ", ".join(f"{_name(c)} {PG_TYPES[str(t)]}" for c, t in frame.dtypes.items())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} ({columns})")
        names = ", ".join(_name(c) for c in frame.columns)
        with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in frame.itertuples(index=False):
                copy.write_row([_value(v) for v in row])
        conn.execute(f"ANALYZE {table}")


def read_only_role(url: str, role: str, tables: list[str]) -> str:
    """A login role that may only SELECT ``tables``; returns the URL that logs in as it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-secret-pw'")
        database = url.rsplit("/", 1)[1]
        conn.execute(f"REVOKE ALL ON DATABASE {database} FROM PUBLIC")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        for table in tables:
            conn.execute(f"GRANT SELECT ON {table} TO {role}")
    base, database = url.rsplit("/", 1)
    return base.replace("postgres@", f"{role}:reader-secret-pw@", 1) + "/" + database
