"""Persistence of one domain: SQLite in WAL mode (the default, one file in the domain folder) or
PostgreSQL (a URL kept in the folder's ``store.url``, mode 0600), behind one interface.

Every state change (a request accepted, approved, run, released...) and its audit row are written
in one transaction: a kill -9 (or a power cut) at any point leaves either the whole change or none
of it. Writers are serialized, on both databases: SQLite's ``BEGIN IMMEDIATE`` takes the file's
write lock; on PostgreSQL every write transaction first takes one transaction-scoped advisory lock
(``pg_advisory_xact_lock``). The audit log is a hash chain, so its appends need one total order
anyway, and nearly every write appends to it; the same order makes check-then-write steps (a budget
check and its debit, a job claim) safe across several server processes. Reads run concurrently.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fednb.domain.store import commit_notices, migrate
from fednb.errors import FednbError

SQLITE_FILE = "domain.db"
URL_FILE = "store.url"
WRITER_LOCK = 0x66656E63  # the advisory lock key every PostgreSQL write transaction holds
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004")  # in order; the last is the layout this fednb writes
# PostgreSQL connections per server process: reads never wait on a lock, and writes queue on the
# writer lock anyway, so a few of each serve any number of threads (see store.postgres.Pool)
READ_CONNECTIONS = 6
WRITE_CONNECTIONS = 3


def folder_url(folder: str | os.PathLike) -> str:
    """The store of the domain in ``folder``: its ``store.url``, else the SQLite file beside it."""
    found = Path(folder) / URL_FILE
    if found.exists():
        return found.read_text(encoding="utf-8").strip()
    return f"sqlite:///{Path(folder).resolve() / SQLITE_FILE}"


def check_url(url: str) -> str:
    """A store URL the owner typed: PostgreSQL (``postgresql://user@host:port/db``) or SQLite."""
    url = (url or "").strip()
    if url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        return url
    raise FednbError(f"{url!r} is not a store fednb can use; give postgresql://USER@HOST:PORT/DATABASE "
                     "(or leave --store out for SQLite in the domain folder)")


def keep_url(folder: Path, url: str) -> None:
    """Write ``store.url`` readable by the owner only: the URL may carry a password."""
    target = folder / URL_FILE
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(url + "\n")


class Store:
    """One database: on SQLite a connection per thread; on PostgreSQL two small pools (reads, writes)."""

    def __init__(self, url: str | os.PathLike):
        url = str(url)
        if "://" not in url:  # a bare path: an SQLite file
            url = f"sqlite:///{Path(url).resolve()}"
        self.url = url
        self.dialect = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self.path = Path(url.removeprefix("sqlite:///")) if self.dialect == "sqlite" else None
        self._local = threading.local()
        self._pools: tuple[Any, Any] | None = None
        self._pools_lock = threading.Lock()

    @classmethod
    def of_folder(cls, folder: str | os.PathLike) -> Store:
        return cls(folder_url(folder))

    def __repr__(self) -> str:
        return f"Store({self.describe()})"

    def describe(self) -> str:
        """Where the data lives, without a password the URL may hold."""
        if self.dialect == "sqlite":
            return str(self.path)
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        return f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"

    def connect(self) -> Any:
        """A connection for reads (and, on SQLite, this thread's connection for everything)."""
        if self.dialect == "postgresql":
            from fednb.domain.store.postgres import Reader

            return Reader(self._pool_pair()[0])
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_sqlite()
            self._local.conn = conn
        return conn

    def _pool_pair(self) -> tuple[Any, Any]:
        with self._pools_lock:
            if self._pools is None:
                from fednb.domain.store.postgres import Pool

                self._pools = (Pool(self.url, READ_CONNECTIONS), Pool(self.url, WRITE_CONNECTIONS))
            return self._pools

    def _open_sqlite(self) -> Any:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def create(self) -> None:
        """Make every table (the migrations, in order) in a new, empty database."""
        migrate.upgrade(self.url)

    def revision(self) -> str | None:
        """The layout's revision; ``"legacy"`` for a domain made before migrations; None if empty."""
        conn = self.connect()
        tables = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?" if self.dialect == "sqlite"
                  else "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                       " AND table_name = ?")
        if conn.execute(tables, ("alembic_version",)).fetchone() is not None:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            return None if row is None else row[0]
        if conn.execute(tables, ("meta",)).fetchone() is not None:
            return "legacy"
        return None

    def check(self) -> None:
        """Bring an older layout up to date in place; refuse one this version does not know."""
        found = self.revision()
        if found == KNOWN_REVISIONS[-1]:
            return
        if found is None:
            raise FednbError(f"{self.describe()} holds no fednb domain store (no tables); create one with "
                             "`fednb domain init`")
        if found != "legacy" and found not in KNOWN_REVISIONS:
            raise FednbError(f"{self.describe()}: store layout {found}, made by a newer fednb; this one knows "
                             f"up to {KNOWN_REVISIONS[-1]}. Upgrade fednb to open it")
        self.close()
        migrate.upgrade(self.url)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction; writers queue here instead of failing mid-way (see the module's note)."""
        if self.dialect == "postgresql":
            with self._postgres_transaction() as conn:
                yield conn
            return
        conn = self.connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    @contextmanager
    def _postgres_transaction(self) -> Iterator[Any]:
        with self._pool_pair()[1].borrow() as conn:
            conn.execute("BEGIN")
            try:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITER_LOCK,))
                yield conn
                commit_notices.announce(conn)  # the other processes hear of it at commit, not by polling
            except BaseException:
                if not conn.broken:  # a broken connection was rolled back by the server
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[Any]:
        return self.connect().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple = ()) -> Any | None:
        return self.connect().execute(sql, params).fetchone()

    def close(self) -> None:
        """Close this thread's SQLite connection, or every idle pooled PostgreSQL connection."""
        if self._pools is not None:
            for pool in self._pools:
                pool.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
