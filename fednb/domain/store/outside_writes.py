"""Wake the domain server when another process writes to its SQLite store.

The owner approves with ``fednb domain approve`` from a terminal: another process, whose commit the
server's own change notification never sees. Re-reading the store every fraction of a second finds
it, but keeps every idle domain awake forever (a hundred workshop domains burned a third of a core
doing nothing). Instead the server asks the kernel (Linux ``inotify(7)``) to tell it when a file of
the store changes: every commit in WAL mode writes to ``domain.db-wal`` (and a checkpoint to
``domain.db``), whoever made it. One thread blocks on that descriptor and calls ``on_change`` once
per burst of events, and twice more shortly after it (:data:`RECHECK_SECONDS`); while nothing is
written it never runs.

Where inotify is missing (not Linux, or the store is not a local file), :meth:`start` says so and
the callers keep re-reading at their old pace.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
from collections.abc import Callable
from pathlib import Path

from fednb.domain.store.watching import Watcher

log = logging.getLogger("fednb.domain.store.outside_writes")

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
IN_CLOEXEC, IN_NONBLOCK = 0o2000000, 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
# A WAL commit becomes visible when the writer updates the shared-memory index (``-shm``, written
# through mmap: no inotify event) just *after* its last write to ``-wal``; a read woken by that write
# can miss the commit, and nothing else is written until the writer's next transaction or close.
# So each burst of events is followed by two quiet re-reads, then sleep again.
RECHECK_SECONDS = (0.05, 0.5)


class OutsideWrites(Watcher):
    """Calls ``on_change()`` whenever a file named ``store_file`` (or its ``-wal``/``-journal``)
    in ``folder`` is written, by any process. ``wakeups`` counts the calls."""

    thread_name = "fednb-outside-writes"

    def __init__(self, folder: str | os.PathLike, store_file: str, on_change: Callable[[], None]):
        super().__init__(on_change)
        self.folder = Path(folder)
        self.store_file = store_file
        self._fd: int | None = None

    def _open(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
        if libc.inotify_add_watch(fd, os.fsencode(self.folder), mask) < 0:
            os.close(fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch on {self.folder}")
        self._fd = fd

    def _release(self) -> None:
        os.close(self._fd)
        self._fd = None

    def _ours(self, name: bytes) -> bool:
        return name.decode(errors="replace") in (self.store_file, f"{self.store_file}-wal",
                                                 f"{self.store_file}-journal")

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        rechecks: list[float] = []
        while True:
            # asleep until the kernel reports a write; after a burst, only until its re-checks are due
            ready = {fd for fd, _ in poller.poll(rechecks[0] * 1000 if rechecks else None)}
            if self._stop_r in ready:
                return
            if not ready:
                rechecks.pop(0)
                self._wake()
            elif self._drain():
                self._wake()
                rechecks = list(RECHECK_SECONDS)

    def _drain(self) -> bool:
        """Read every pending event; True if one concerns the store."""
        ours = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return ours
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
                ours = ours or self._ours(name)
                offset += _EVENT.size + length


def watcher(folder: str | os.PathLike, store, on_change: Callable[[], None]):
    """What tells this process of other processes' commits to ``store``: the kernel for an SQLite
    file, the database's own notices for PostgreSQL (:mod:`.commit_notices`). Call ``start()`` on
    it; False there means nobody will tell, and the callers re-read the store on a timer."""
    if store.dialect == "postgresql":
        from fednb.domain.store.commit_notices import CommitNotices

        return CommitNotices(store.url, on_change)
    return OutsideWrites(folder, store.path.name if store.path is not None else "", on_change)
