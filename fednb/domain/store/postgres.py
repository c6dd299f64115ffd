"""A PostgreSQL connection that answers like the SQLite one (psycopg 3), and small pools of them.

The store's statements are written once, in the SQL both databases share, with ``?`` placeholders
(SQLite's ``qmark`` style); here they become psycopg's ``%s`` and rows answer by position and by
column name, as :class:`sqlite3.Row` does. The connection is in autocommit mode: a read outside
:meth:`fednb.domain.store.database.Store.transaction` is one statement that sees committed data, and
a transaction is opened explicitly there.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from fednb.errors import FednbError


class Row:
    """One result row: ``row[0]``, ``row["name"]``, ``row.keys()``, ``dict(row)``, unpacking."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]):
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._index)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _rows(cursor):
    description = cursor.description
    if description is None:
        return tuple
    index = {c.name: i for i, c in enumerate(description)}
    return lambda values: Row(index, values)


@lru_cache(maxsize=2048)
def placeholders(sql: str) -> str:
    """``?`` to ``%s``; a literal ``%`` (``LIKE ? || '%'``) is doubled so psycopg keeps it."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresConnection:
    dialect = "postgresql"

    def __init__(self, url: str):
        import psycopg

        self._conn = psycopg.connect(url, autocommit=True, row_factory=_rows)

    @property
    def broken(self) -> bool:
        return self._conn.closed or self._conn.broken

    def execute(self, sql: str, params: Sequence[Any] = ()):
        return self._conn.execute(placeholders(sql), tuple(params))

    def close(self) -> None:
        self._conn.close()


def _connect(url: str) -> PostgresConnection:
    try:
        return PostgresConnection(url)
    except Exception as exc:  # psycopg.OperationalError: the owner needs the reason, not a traceback
        from urllib.parse import urlsplit

        where = urlsplit(url)
        raise FednbError(f"cannot reach the domain's store postgresql://{where.hostname}:{where.port or 5432}"
                         f"{where.path}: {str(exc).strip()}") from None


class Pool:
    """At most ``size`` connections, lent one at a time (a thread waits when all are lent).

    A server process has dozens of threads (the HTTP thread pool, the runner's lanes); a connection
    each would exhaust PostgreSQL's ``max_connections`` (100 by default) with a few processes.
    """

    def __init__(self, url: str, size: int):
        self.url, self.size = url, size
        self._idle: queue.LifoQueue[PostgresConnection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def borrow(self) -> Iterator[PostgresConnection]:
        self._slots.acquire()
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = _connect(self.url)
            try:
                yield conn
            finally:
                if conn.broken:
                    conn.close()
                else:
                    self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class Result:
    """A statement's rows, fetched while the connection was lent: ``fetchone``, ``fetchall``, iteration."""

    def __init__(self, rows: list[Any], rowcount: int):
        self._rows, self.rowcount, self._next = rows, rowcount, 0

    def fetchone(self) -> Any | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Reader:
    """What ``Store.connect()`` gives on PostgreSQL: any thread may use it; each statement runs on a
    pooled connection in autocommit mode (it sees what is committed, as a read outside a transaction
    does on SQLite)."""

    dialect = "postgresql"

    def __init__(self, pool: Pool):
        self._pool = pool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        with self._pool.borrow() as conn:
            cursor = conn.execute(sql, params)
            return Result(cursor.fetchall() if cursor.description else [], cursor.rowcount)

    def close(self) -> None:
        self._pool.close()
