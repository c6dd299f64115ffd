"""A dataset that stays in the owner's PostgreSQL database: built-ins run there, inside PostgreSQL.

How the built-ins push down, chosen by measurement (``benchmarks/pushdown_parity.py``): the
built-in's DuckDB SQL is translated by sqlglot to PostgreSQL's dialect and sent with psycopg 3, so
PostgreSQL computes the aggregate and only the result row(s) cross the wire. The alternative,
DuckDB's postgres scanner, does not push aggregates down: its plan is HASH_GROUP_BY over
POSTGRES_SCAN, and the server log shows one ``COPY (SELECT "x", "g" FROM t WHERE ctid BETWEEN ...)
TO STDOUT (FORMAT binary)`` per page range, i.e. every (filtered, projected) row is pulled into the
domain (on 1M rows: 0.12 s against 0.06 s for the pushed-down query, and the domain's memory and
the network carry the rows). It also pastes filter values into the text it sends. Pushing down
keeps the rows in the owner's database, as the owner expects of "the data stays there".

Every query runs in a ``READ ONLY`` transaction with ``statement_timeout`` set, under the read-only
role the owner gave the domain (``register`` in :mod:`fednb.domain.data.sources` refuses a role that
could write). Errors name the failure's kind, never the server's message: a cast error quotes the
offending value, which is a row of the owner's data, and a connection error quotes user and host.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd

from fednb.domain.data.engines.base import ROW_ID, Engine, EngineError
from fednb.domain.data.engines.translate import SOURCE, table_name, translate

BATCH_ROWS = 1 << 18  # rows per piece of a streamed result
# PostgreSQL type OIDs (pg_type.dat) and how their values become pandas columns like Parquet's.
INTEGERS = {20, 21, 23, 26}  # int8, int2, int4, oid
FLOATS = {700, 701, 1700}  # float4, float8, numeric
BOOLEAN = 16
TIMES = {1082, 1114, 1184}  # date, timestamp, timestamptz
# PostgreSQL's type names in DuckDB's vocabulary, which the built-ins' compiler reads
DUCKDB_TYPES = {"int2": "SMALLINT", "int4": "INTEGER", "int8": "BIGINT", "oid": "BIGINT", "float4": "FLOAT",
                "float8": "DOUBLE", "numeric": "DECIMAL", "text": "VARCHAR", "varchar": "VARCHAR", "bpchar": "VARCHAR",
                "bool": "BOOLEAN", "date": "DATE", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMP WITH TIME ZONE"}
# A row's id from its physical place (page, line): stable while the owner only appends, and below
# 2**32 for tables under ~120 GB (a page holds at most 291 rows: MaxHeapTuplesPerPage).
_CTID = "trim(both '()' from ctid::text)"
ROW_ID_SQL = f"(split_part({_CTID}, ',', 1)::bigint * 291 + split_part({_CTID}, ',', 2)::bigint - 1)"


def redacted(url: str) -> str:
    """The URL without user or password, for the owner's listings."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


class PostgresEngine(Engine):
    """One table in the owner's PostgreSQL database, read through ``url`` (a read-only role)."""

    dialect = "postgres"

    def __init__(self, url: str, table: str, *, timeout_seconds: float = 20.0, connect_seconds: float = 10.0):
        self._url = url
        self._table = tuple(table_name(table))
        self._timeout_ms = max(1, int(timeout_seconds * 1000))
        self._connect_seconds = max(1, int(connect_seconds))
        self._conn = None
        self._columns: dict[str, str] | None = None

    @property
    def quoted_table(self) -> str:
        return ".".join(f'"{p}"' for p in self._table)

    @property
    def relation(self) -> str:
        """``data`` as the built-ins see it: the owner's table and each row's id."""
        return f'(SELECT *, {ROW_ID_SQL} AS "{ROW_ID}" FROM {self.quoted_table})'

    # -- the contract ----------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self._run(self._text(sql), params)

    def _text(self, sql: str) -> str:
        booleans = frozenset(name for name, kind in self.columns().items() if kind == "BOOLEAN")
        return translate(sql, "postgres", True, booleans).replace(f'"{SOURCE}"', self.relation)

    def columns(self) -> dict[str, str]:
        """Column name -> type, named as DuckDB names it (the compiler reads DuckDB's names)."""
        if self._columns is None:
            self._columns = self._describe()
        return dict(self._columns)

    def _describe(self) -> dict[str, str]:
        import psycopg

        cursor = self._execute(f"SELECT * FROM {self.quoted_table} LIMIT 0", ())
        names = {}
        for column in cursor.description:
            info = psycopg.adapters.types.get(column.type_code)
            name = info.name if info else str(column.type_code)
            names[column.name] = DUCKDB_TYPES.get(name, name.upper())
        self._finish()
        return names

    def row_count(self) -> int:
        return int(self._run(f"SELECT count(*) AS n FROM {self.quoted_table}", ()).iloc[0, 0])

    def sample(self, n: int, seed: int) -> pd.DataFrame:
        """Bernoulli sampling in PostgreSQL (``TABLESAMPLE ... REPEATABLE``): only about ``n`` rows
        leave the database, whatever the table's size."""
        total = self.row_count()
        percent = min(100.0, 100.0 * 1.2 * n / max(total, 1))
        df = self._run(f"SELECT * FROM {self.quoted_table} TABLESAMPLE BERNOULLI ($1::float4) REPEATABLE ($2::float8)",
                       (percent, seed % 2**31))
        return df.sample(n=n, random_state=seed).reset_index(drop=True) if len(df) > n else df

    def frame(self, columns: Sequence[str] | None = None, limit: int | None = None) -> pd.DataFrame:
        """Rows in row-id order, indexed by row id (as the Parquet engine's)."""
        known = self.columns()
        wanted = list(known) if columns is None else [c for c in columns if c in known]
        picked = ", ".join('"' + c.replace('"', '""') + '"' for c in [ROW_ID, *wanted])
        suffix = " LIMIT $1" if limit is not None else ""
        df = self._run(f'SELECT {picked} FROM {self.relation} AS data ORDER BY "{ROW_ID}"{suffix}',
                       (int(limit),) if limit is not None else ())
        df.index = pd.Index(df.pop(ROW_ID).to_numpy(), name=None)
        return df

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # -- the owner's checks ----------------------------------------------------------------------
    def writable(self) -> list[str]:
        """What the domain's role could change, if anything (a superuser, or INSERT/UPDATE/DELETE/
        TRUNCATE on the table): the domain's credentials must not be able to write."""
        found = self._run(
            "SELECT r.rolsuper AS superuser, has_table_privilege(current_user, $1, 'INSERT') AS insert,"
            " has_table_privilege(current_user, $1, 'UPDATE') AS update,"
            " has_table_privilege(current_user, $1, 'DELETE') AS delete,"
            " has_table_privilege(current_user, $1, 'TRUNCATE') AS truncate,"
            " has_database_privilege(current_user, current_database(), 'CREATE') AS create_schema"
            " FROM pg_roles r WHERE r.rolname = current_user", (self.quoted_table,))
        return [name for name, value in found.iloc[0].items() if bool(value)]

    # -- connection ------------------------------------------------------------------------------
    def _connect(self):
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            # autocommit, so that each query's own BEGIN READ ONLY opens its transaction
            self._conn = psycopg.connect(
                self._url, connect_timeout=self._connect_seconds, autocommit=True, cursor_factory=psycopg.RawCursor,
                options=f"-c default_transaction_read_only=on -c statement_timeout={self._timeout_ms}",
                application_name="fednb-domain")
            self._conn.server_cursor_factory = psycopg.RawServerCursor
        except psycopg.Error:
            raise EngineError("the dataset's PostgreSQL database cannot be reached (down, or it refused the "
                              "domain's credentials); the owner can check it") from None
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any], *, streamed: bool = False):
        """``sql`` in a new read-only transaction; ``streamed``: through a server-side cursor, so a
        long result (the row ids behind a release) arrives in pieces."""
        import psycopg

        conn = self._connect()
        try:
            conn.execute("BEGIN READ ONLY")
            cursor = conn.cursor(name="fednb_rows") if streamed else conn.cursor()
            cursor.execute(sql, list(params))
            return cursor
        except psycopg.Error as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: Exception) -> EngineError:
        """The analyst's sentence for a failure; the server's own text is never passed on."""
        import psycopg

        if isinstance(exc, psycopg.errors.QueryCanceled):
            self._finish()
            return EngineError(f"the dataset's PostgreSQL database did not answer within "
                               f"{self._timeout_ms / 1000:g} s; the query was stopped")
        if isinstance(exc, psycopg.OperationalError):
            self.close()
            return EngineError("the connection to the dataset's PostgreSQL database was lost")
        self._finish()
        return EngineError(f"the dataset's PostgreSQL database refused the query "
                           f"({type(exc).__name__}, SQLSTATE {getattr(exc, 'sqlstate', None)})")

    def _finish(self) -> None:
        """End the query's transaction (read-only: nothing to keep)."""
        import psycopg

        conn = self._conn
        if conn is not None and not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")

    def _run(self, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        import psycopg

        cursor = self._execute(sql, params)
        try:
            rows = cursor.fetchall()
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        finally:
            self._finish()
        return as_frame(rows, [(c.name, c.type_code) for c in cursor.description])

    def batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[pd.DataFrame]:
        import psycopg

        cursor = self._execute(self._text(sql), params, streamed=True)
        try:
            while True:
                rows = cursor.fetchmany(BATCH_ROWS)
                if not rows and cursor.description is None:
                    return
                yield as_frame(rows, [(c.name, c.type_code) for c in cursor.description])
                if len(rows) < BATCH_ROWS:
                    return
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
            self._finish()


def as_frame(rows: list[tuple], columns: list[tuple[str, int]]) -> pd.DataFrame:
    """Rows as pandas with the dtypes a Parquet copy of the table would have (numeric as float,
    integers with missing values as float, dates as datetime64), so built-ins see one kind of frame."""
    names = [name for name, _ in columns]
    df = pd.DataFrame.from_records(rows, columns=names) if rows else pd.DataFrame(columns=names)
    for position, (_, oid) in enumerate(columns):
        s = df.iloc[:, position]
        if oid in INTEGERS:
            df.isetitem(position, s.astype("int64") if len(s) and not s.isna().any() else s.astype("float64"))
        elif oid in FLOATS:
            df.isetitem(position, pd.to_numeric(s.astype("float64")))
        elif oid == BOOLEAN and len(s) and not s.isna().any():
            df.isetitem(position, s.astype("bool"))
        elif oid in TIMES:
            df.isetitem(position, pd.to_datetime(s, utc=oid == 1184))
    return df
