"""What both ways of hearing other processes' commits share: a thread that blocks until told
(:mod:`.outside_writes` for an SQLite file, :mod:`.commit_notices` for PostgreSQL), a pipe that
stops it, and ``on_change`` called once per wake, counted in ``wakeups`` (the owner's
``/v1/wakeups`` proof that an idle domain sleeps)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("fednb.domain.store.watching")


class Watcher:
    """Subclasses open what they block on in :meth:`_open` (raising ``OSError`` or the driver's
    error where it cannot be had), wait on it and on ``_stop_r`` in :meth:`_watch`, and let it go in
    :meth:`_release`."""

    thread_name = "fednb-watcher"

    def __init__(self, on_change: Callable[[], None]):
        self.on_change = on_change
        self.wakeups = 0
        self._stop_r, self._stop_w = -1, -1
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Begin watching; False (nothing started, the callers re-read the store on a timer) where
        nothing can tell this process of other processes' commits."""
        try:
            self._open()
        except Exception as exc:
            log.warning("%s cannot hear other processes' writes (%s); re-reading the store instead",
                        self.thread_name, exc)
            return False
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._watch, name=self.thread_name, daemon=True)
        self._thread.start()
        return True

    def close(self) -> None:
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self._thread = None
        self._release()

    def _wake(self) -> None:
        self.wakeups += 1
        try:
            self.on_change()
        except Exception:  # a listener's failure must not stop the watching
            log.exception("waking the domain after another process's write failed")

    def _open(self) -> None:
        raise NotImplementedError

    def _watch(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError
