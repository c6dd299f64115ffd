"""A PostgreSQL connection that answers like the SQLite one (psycopg 3).

The store's statements are written once, in the SQL both databases share, with ``?`` placeholders
(SQLite's ``qmark`` style); here they become psycopg's ``%s`` and rows answer by position and by
column name, as :class:`sqlite3.Row` does. The connection is in autocommit mode: a read outside
:meth:`fednb.domain.store.database.Store.transaction` is one statement that sees committed data, and
a transaction is opened explicitly there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any


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
