"""Wake every server process of a PostgreSQL store when another one commits (``LISTEN``/``NOTIFY``).

SQLite's commits are seen through the file system (:mod:`.outside_writes`); a PostgreSQL store has
no file here to watch. Re-reading the store every fraction of a second would find other processes'
work (the owner's CLI approving, another ``--workers`` process queueing a job or releasing the
result a long-poll waits for), but keeps every idle domain awake and delays each step by up to a
period. Instead every write transaction ends with ``pg_notify`` on one channel (:func:`announce`):
PostgreSQL delivers it at commit, and only if the transaction commits (PostgreSQL documentation,
"NOTIFY": notifications of a transaction are sent when it commits and not at all if it aborts). Each
server process listens on a connection of its own (:class:`CommitNotices`); one thread blocks on that
socket and calls ``on_change`` once per burst of notices. While nothing is written it never runs.

The payload names the announcing process, so a process is not woken by its own commits (it already
wakes its own waiters directly). When the listening connection breaks (the database restarted),
the thread reconnects and then calls ``on_change`` once, since notices sent meanwhile are lost.
"""

from __future__ import annotations

import logging
import os
import select
import uuid
from collections.abc import Callable
from typing import Any

from fednb.domain.store.watching import Watcher

log = logging.getLogger("fednb.domain.store.commit_notices")

CHANNEL = "fednb_commits"
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # backing off while the database is unreachable
_SENDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process's name in the payloads


def _sender() -> str:
    """This process's name, renewed after a fork (``serve --workers N`` forks its processes)."""
    global _SENDER
    if not _SENDER.startswith(f"{os.getpid()}-"):
        _SENDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return _SENDER


def announce(conn: Any) -> None:
    """Inside a write transaction: tell the store's other processes, at commit, that it changed."""
    conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, _sender()))


class CommitNotices(Watcher):
    """Calls ``on_change()`` whenever another process commits a write to the PostgreSQL store at
    ``url``. ``wakeups`` counts the calls; same interface as :class:`.outside_writes.OutsideWrites`."""

    thread_name = "fednb-commit-notices"

    def __init__(self, url: str, on_change: Callable[[], None]):
        super().__init__(on_change)
        self.url = url
        self._conn: Any = None

    def _open(self) -> None:
        self._conn = self._listen()

    def _release(self) -> None:
        self._close_conn()

    def _listen(self) -> Any:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _watch(self) -> None:
        while True:
            poller = select.poll()
            poller.register(self._conn.pgconn.socket, select.POLLIN)
            poller.register(self._stop_r, select.POLLIN)
            while True:
                ready = {fd for fd, _ in poller.poll()}  # no timeout: asleep until a notice arrives
                if self._stop_r in ready:
                    return
                try:
                    ours = self._drain()
                except Exception as exc:  # the connection broke: listen again, then catch up once
                    log.warning("lost the store's commit notices (%s); listening again", exc)
                    if not self._reconnect():
                        return
                    self._wake()
                    break
                if ours:
                    self._wake()

    def _drain(self) -> bool:
        """Read every notice that arrived; True if one came from another process."""
        pgconn = self._conn.pgconn
        pgconn.consume_input()
        if pgconn.status != 0:  # CONNECTION_OK
            raise OSError("the connection to the store is closed")
        others = False
        while (notice := pgconn.notifies()) is not None:
            others = others or notice.extra.decode(errors="replace") != _sender()
        return others

    def _reconnect(self) -> bool:
        """Listen on a new connection; False when stopped meanwhile."""
        self._close_conn()
        attempt = 0
        while True:
            try:
                self._conn = self._listen()
                return True
            except Exception as exc:
                delay = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
                log.warning("cannot listen for commits yet (%s); again in %g s", exc, delay)
                attempt += 1
                if select.select([self._stop_r], [], [], delay)[0]:
                    return False
