"""The retry policy: bounded backoff, a deadline, and only failures that may be transient."""

from __future__ import annotations

import httpx
import pytest

from offload_client import Retry, UnreachableError
from offload_client.retry import Attempts


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_its_cap_with_jitter_below_it() -> None:
    policy = Retry(first_delay=0.1, max_delay=1.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    jittered = Retry(first_delay=0.1, max_delay=1.0)
    assert all(0.5 <= jittered.delay(4) / 0.8 <= 1.0 for _ in range(50))


def test_no_try_starts_past_the_deadline() -> None:
    clock = Clock()
    attempts = Attempts(Retry(deadline=1.0, first_delay=0.3, max_delay=0.3, jitter=False), True, clock)
    error = httpx.ConnectError("refused")
    for _ in range(3):
        assert attempts.after_error(error) == 0.3
        clock.now += 0.3
    with pytest.raises(UnreachableError, match="after 4 tries: ConnectError: refused") as raised:
        attempts.after_error(error)  # a fifth try would start at 1.2 s
    assert raised.value.__cause__ is error


def test_a_503_waits_its_retry_after_and_other_answers_stand() -> None:
    attempts = Attempts(Retry(max_delay=2.0, jitter=False, first_delay=0.1), True, Clock())
    assert attempts.after_response(httpx.Response(503, headers={"Retry-After": "1"})) == 1.0
    assert attempts.after_response(httpx.Response(503, headers={"Retry-After": "60"})) == 2.0  # capped
    for status in (200, 202, 400, 404, 409, 422, 500, 502):
        assert attempts.after_response(httpx.Response(status)) is None


def test_calls_unsafe_to_repeat_and_errors_that_would_repeat_are_not_retried() -> None:
    assert Attempts(Retry(), False, Clock()).after_response(httpx.Response(503)) is None
    with pytest.raises(UnreachableError, match="after 1 try"):
        Attempts(Retry(), False, Clock()).after_error(httpx.ReadError("lost"))
    with pytest.raises(UnreachableError, match="UnsupportedProtocol"):
        Attempts(Retry(), True, Clock()).after_error(httpx.UnsupportedProtocol("ftp://"))
