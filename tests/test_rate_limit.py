"""Refused tokens are rate-limited per client address: after 20 in 60 s the address gets 429 with
Retry-After for a while, valid tokens included; another address is unaffected."""

from __future__ import annotations

import httpx
import pytest

from fednb.domain.api.ratelimit import FailedTokenLimiter
from tests.api_support import assert_clean_error, auth


def _client(url: str, address: str) -> httpx.Client:
    return httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_an_address_that_keeps_failing_is_refused_and_others_are_not(hospitals, alice_token):
    url = hospitals[0].url
    with _client(url, "127.66.0.1") as guesser, _client(url, "127.66.0.2") as honest:
        for i in range(20):  # the policy's default: 20 refused tokens in 60 s
            r = guesser.get("/v1/datasets", headers=auth(f"fednb_guess{i:02d}" + "x" * 36))
            assert_clean_error(r, 401)
        locked = guesser.get("/v1/datasets", headers=auth("fednb_guess20" + "x" * 36))
        assert_clean_error(locked, 429)
        assert 0 < int(locked.headers["Retry-After"]) <= 60
        assert "too many refused tokens" in locked.json()["error"]
        # while locked out, even a valid token from that address waits: guessing cannot go on
        assert_clean_error(guesser.get("/v1/datasets", headers=auth(alice_token)), 429)
        # the public endpoint and other addresses are unaffected
        assert guesser.get("/v1/info").status_code == 200
        assert honest.get("/v1/datasets", headers=auth(alice_token)).status_code == 200
        assert_clean_error(honest.get("/v1/datasets", headers=auth("fednb_" + "y" * 43)), 401)
        # a missing token is not a guess: it is not counted
        for _ in range(25):
            assert_clean_error(honest.get("/v1/datasets"), 401)
        assert honest.get("/v1/datasets", headers=auth(alice_token)).status_code == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides_and_the_lockout_ends():
    clock = Clock()
    limiter = FailedTokenLimiter(max_failures=3, window_s=10, lockout_s=30, clock=clock)
    assert not limiter.record_failure("a") and not limiter.record_failure("a")
    clock.now += 11  # both fell out of the window
    assert not limiter.record_failure("a") and not limiter.record_failure("a")
    assert limiter.retry_after("a") == 0
    assert limiter.record_failure("a")  # the third within 10 s
    assert limiter.retry_after("a") == 30 and limiter.retry_after("b") == 0
    clock.now += 29.5
    assert limiter.retry_after("a") == 1
    clock.now += 0.5
    assert limiter.retry_after("a") == 0
    assert not limiter.record_failure("a")  # a fresh start after the lockout


def test_memory_is_bounded_by_forgetting_the_least_recently_active():
    clock = Clock()
    limiter = FailedTokenLimiter(max_failures=2, window_s=60, lockout_s=60, max_addresses=100, clock=clock)
    limiter.record_failure("first")
    for i in range(500):
        limiter.record_failure(f"10.0.{i // 250}.{i % 250}")
    assert len(limiter._failures) <= 100
    assert not limiter.record_failure("first")  # forgotten: counts from one again
    for i in range(500):  # lockouts too
        limiter.record_failure(f"l{i}")
        limiter.record_failure(f"l{i}")
    assert len(limiter._locked_until) <= 100


def test_nonsense_settings_are_refused():
    with pytest.raises(ValueError):
        FailedTokenLimiter(max_failures=0)
