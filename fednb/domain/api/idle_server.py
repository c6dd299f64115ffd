"""A uvicorn server that sleeps while nobody calls it.

uvicorn's own main loop wakes ten times a second (``asyncio.sleep(0.1)``) to refresh the ``Date``
header and to look for a stop signal. One domain does not notice; a workshop laptop running a
hundred domains spends a third of a core on those wake-ups alone. Here the main loop waits on an
event that the stop signal sets, and the ``Date`` header (RFC 9110 §6.6.1: an origin server with a
clock sends one) is written per response from a value cached for the current second.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import Any

import uvicorn


class IdleServer(uvicorn.Server):
    """``uvicorn.Server`` without the 100 ms tick: it wakes only for connections and signals.

    ``wakeups`` counts the main loop's wake-ups (one at start, one at stop), so a test can show that
    an idle server does not tick.
    """

    def __init__(self, config: uvicorn.Config):
        config.date_header = False  # DateHeader writes it instead of the tick
        super().__init__(config)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.wakeups = 0

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.on_tick(0)  # the default headers, once
        while not self.should_exit:
            self.wakeups += 1
            await self._stop.wait()


class DateHeader:
    """ASGI middleware: a ``Date`` header on every HTTP response, formatted once per second."""

    def __init__(self, app: Any):
        self.app = app
        self._second = -1
        self._value = b""

    def _date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True).encode()
        return self._value

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"date", self._date())]}
            await send(message)

        await self.app(scope, receive, send=dated)
