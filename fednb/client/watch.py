"""Following a request in the background until every domain is final.

A :class:`Watcher` runs in a daemon thread. Each turn is a long-poll (``request.wait``) of a few
seconds: a final state (done, denied...) comes back the moment the domain records it; approved and
running show within one turn. The turns lengthen while nothing changes (an owner may take hours)
and shorten again after a change. Listeners (``request.on_change``) hear every turn.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fednb.client.requests import FederatedRequest

FIRST_TURN_S = 1.0
LONGEST_TURN_S = 15.0
GROWTH = 1.5


class Watcher:
    def __init__(self, request: FederatedRequest, *, first: float = FIRST_TURN_S, longest: float = LONGEST_TURN_S):
        self.request = request
        self.first, self.longest = first, longest
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        """Told to stop (``stop()``) before the request was final."""
        return self._stop.is_set()

    def start(self) -> Watcher:
        if not self.running and not self.request.done:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="fednb-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if timeout is not None and self._thread is not None:
            self._thread.join(timeout)

    def _snapshot(self) -> tuple:
        return tuple((p.domain, p.status, p.state.get("reason"), p.problem) for p in self.request.parts)

    def _follow(self) -> None:
        turn = self.first
        while not self._stop.is_set() and not self.request.done:
            before = self._snapshot()
            try:
                self.request.wait(turn, progress=False)
            except Exception:  # the I/O loop went away (interpreter exit): nothing left to follow
                return
            turn = self.first if self._snapshot() != before else min(turn * GROWTH, self.longest)
