"""Long-polls: wait for a request or a round to be final on the event loop, never in a held thread.

Worker threads call :meth:`Notifier.fire_threadsafe` when the domain changes; waiters also re-read
the store every ``RECHECK_SECONDS`` (in a thread), because the CLI may decide from another process.
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
    """Wakes long-polls when the domain changes (called from worker threads)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def fire_threadsafe(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        if self._event is None or self.loop is not asyncio.get_running_loop():
            self.bind()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


async def the_notifier(request: HttpRequest) -> Notifier:
    return request.app.state.notifier


TheNotifier = Annotated[Notifier, Depends(the_notifier)]


async def until_final(domain: Domain, notifier: Notifier, request_id: str, scope: str | None,
                      wait: float) -> Request:
    deadline = time.monotonic() + wait
    while True:
        req = await run_in_threadpool(domain.request, request_id, analyst=scope)
        remaining = deadline - time.monotonic()
        if req.final or remaining <= 0:
            return req
        await notifier.wait(min(remaining, RECHECK_SECONDS))


async def round_final(domain: Domain, notifier: Notifier, request_id: str, number: int, scope: str | None,
                      wait: float) -> Round:
    deadline = time.monotonic() + wait
    while True:
        r = await run_in_threadpool(domain.round, request_id, number, analyst=scope)
        remaining = deadline - time.monotonic()
        if r.status in ROUND_FINAL or remaining <= 0:
            return r
        await notifier.wait(min(remaining, RECHECK_SECONDS))
