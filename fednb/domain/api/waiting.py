"""Long-polls: wait for a request or a round to be final on the event loop, never in a held thread.

Worker threads call :meth:`Notifier.fire_threadsafe` when the domain changes, and so does the server's
store watcher when another process (the owner's CLI) writes (:mod:`fednb.domain.store.outside_writes`);
a waiter then sleeps until a change, not on a timer. Where no watcher runs, ``recheck_seconds`` keeps
the old re-read of the store (in a thread) every quarter second.
"""

import asyncio
import time
from typing import Annotated

from fastapi import Depends, Query
from fastapi import Request as HttpRequest
from starlette.concurrency import run_in_threadpool

from fednb.domain.domain import Domain
from fednb.models import ROUND_FINAL, Request, Round

MAX_WAIT_SECONDS = 60.0
RECHECK_SECONDS = 0.25

Wait = Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description="Seconds to wait for a final state.")]


class Notifier:
    """Wakes long-polls when the domain changes (called from worker threads).

    A waiter takes :meth:`next_change` *before* it reads the store and waits on that event after:
    a change made while it was reading has already set it, so none is missed without a re-read.
    """

    def __init__(self, recheck_seconds: float | None = RECHECK_SECONDS) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.recheck_seconds = recheck_seconds
        self.wakeups = 0  # long-polls that woke up, by a change or a re-read

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def fire_threadsafe(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._fire)
            except RuntimeError:  # closed between the check and the call: nobody is waiting
                pass

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    def next_change(self) -> asyncio.Event:
        """The event the next change of the domain sets (call on the event loop)."""
        if self._event is None or self.loop is not asyncio.get_running_loop():
            self.bind()
        return self._event

    async def wait(self, change: asyncio.Event, timeout: float) -> None:
        """Until ``change`` is set or ``timeout`` (shortened to ``recheck_seconds``) is over."""
        if self.recheck_seconds is not None:
            timeout = min(timeout, self.recheck_seconds)
        try:
            await asyncio.wait_for(change.wait(), timeout)
        except TimeoutError:
            pass
        self.wakeups += 1


async def the_notifier(request: HttpRequest) -> Notifier:
    return request.app.state.notifier


TheNotifier = Annotated[Notifier, Depends(the_notifier)]


async def until_final(domain: Domain, notifier: Notifier, request_id: str, scope: str | None,
                      wait: float) -> Request:
    deadline = time.monotonic() + wait
    while True:
        change = notifier.next_change()
        req = await run_in_threadpool(domain.request, request_id, analyst=scope)
        remaining = deadline - time.monotonic()
        if req.final or remaining <= 0:
            return req
        await notifier.wait(change, remaining)


async def round_final(domain: Domain, notifier: Notifier, request_id: str, number: int, scope: str | None,
                      wait: float) -> Round:
    deadline = time.monotonic() + wait
    while True:
        change = notifier.next_change()
        r = await run_in_threadpool(domain.round, request_id, number, analyst=scope)
        remaining = deadline - time.monotonic()
        if r.status in ROUND_FINAL or remaining <= 0:
            return r
        await notifier.wait(change, remaining)
