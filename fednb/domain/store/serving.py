"""Which processes serve a domain whose store is on PostgreSQL (session-level advisory locks).

Each serving process holds a *shared* lock for its whole life, on a connection of its own. Recovery
after a crash (re-queueing jobs left running) takes the *exclusive* lock first, so it waits until
every process of the crashed generation is gone (PostgreSQL drops a dead process's locks with its
connection) and never re-queues a job that a live process is still running. A second, separate
``fednb domain serve`` of the same store finds the lock held and stops with a clear message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fednb.domain.store.database import Store
from fednb.domain.store.postgres import PostgresConnection
from fednb.errors import FednbError

SERVING_LOCK = 0x66656E64


def _exclusive(store: Store, wait_s: float) -> PostgresConnection:
    conn = PostgresConnection(store.url)
    try:
        conn.execute(f"SET lock_timeout = '{int(wait_s * 1000)}ms'")
        conn.execute("SELECT pg_advisory_lock(?)", (SERVING_LOCK,))
    except Exception as exc:  # psycopg.errors.LockNotAvailable
        conn.close()
        raise FednbError(f"another server process still serves the store {store.describe()} "
                         f"(waited {wait_s:g} s); stop it first, or serve with --workers N") from exc
    return conn


@contextmanager
def recovering(store: Store, wait_s: float = 30.0) -> Iterator[None]:
    """Hold the exclusive lock while the block runs (re-queueing what a crash left running)."""
    conn = _exclusive(store, wait_s)
    try:
        yield
    finally:
        conn.close()  # the lock goes with the connection


def sole(store: Store, wait_s: float = 30.0) -> PostgresConnection | None:
    """A single server process: the exclusive lock for its whole life (None on SQLite, whose server
    is alone by construction); keep the returned connection open, close it on the way out."""
    return _exclusive(store, wait_s) if store.dialect == "postgresql" else None


def serving(store: Store) -> PostgresConnection:
    """Take the shared lock for this process's life; keep the returned connection open."""
    conn = PostgresConnection(store.url)
    conn.execute("SELECT pg_advisory_lock_shared(?)", (SERVING_LOCK,))
    return conn
