"""Failed token attempts, counted per client address.

Tokens carry 256 random bits, so guessing one is hopeless; what this stops is the cost of trying:
a client that presents ``max_failures`` unknown or revoked tokens within ``window_s`` seconds is
refused (HTTP 429 with ``Retry-After``) for ``lockout_s`` seconds, without its tokens being looked
up at all. Other addresses are unaffected. Memory is bounded: at most ``max_addresses`` addresses
are tracked, the least recently active forgotten first.

The address is the TCP peer's. Behind a reverse proxy every client shares the proxy's address, so
one noisy client would lock out all: run the domain without one, or raise the limit (SECURITY.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailedTokenLimiter:
    def __init__(self, max_failures: int = 20, window_s: float = 60.0, lockout_s: float = 60.0, *,
                 max_addresses: int = 10_000, clock: Callable[[], float] = time.monotonic):
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0:
            raise ValueError("max_failures, window_s and lockout_s must be positive")
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()  # FastAPI runs sync dependencies on a thread pool
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked_until: dict[str, float] = {}

    def retry_after(self, address: str) -> int:
        """Whole seconds until ``address`` may try again; 0 when it may now."""
        with self._lock:
            until = self._locked_until.get(address)
            if until is None:
                return 0
            left = until - self._clock()
            if left <= 0:
                del self._locked_until[address]
                return 0
            return max(1, math.ceil(left))

    def record_failure(self, address: str) -> bool:
        """Count one failed attempt; True when it locks the address out."""
        with self._lock:
            now = self._clock()
            seen = self._failures.pop(address, None) or deque()
            while seen and seen[0] <= now - self.window_s:
                seen.popleft()
            seen.append(now)
            if len(seen) >= self.max_failures:
                self._locked_until[address] = now + self.lockout_s
                self._trim(now)
                return True
            self._failures[address] = seen  # re-inserted last: the most recently active
            self._trim(now)
            return False

    def _trim(self, now: float) -> None:
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        if len(self._locked_until) > self.max_addresses:
            for address, until in list(self._locked_until.items()):
                if until <= now:
                    del self._locked_until[address]
            while len(self._locked_until) > self.max_addresses:
                del self._locked_until[next(iter(self._locked_until))]
