"""When a call is tried again: after a dropped connection or a 503, with backoff, within a deadline.

Only calls that are safe to repeat are retried: reads, and enqueues, which carry an Idempotency-Key
so that the server answers a repeat with the job the first try made. Nothing else is (a 4xx never).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from offload_client.errors import UnreachableError

# What may have happened to a request that got no answer: it may or may not have reached the app.
# Anything else (a bad URL, a proxy refusing, a local protocol error) fails the same way again.
TRANSIENT = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
# Redis unavailable (offload answers it within REDIS_TIMEOUT, with Retry-After), or a router's
# answer while the web restarts.
RETRY_STATUSES = frozenset({503})


@dataclass(frozen=True)
class Retry:
    """The retry policy: exponential backoff from `first_delay` to `max_delay`, with jitter, until
    `deadline` seconds after the first try or `attempts` tries, whichever comes first."""

    deadline: float = 30.0
    attempts: int = 30
    first_delay: float = 0.1
    max_delay: float = 2.0
    jitter: bool = True  # spread clients that failed together, so they do not return together

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failure in a row."""
        delay = min(self.max_delay, self.first_delay * 2.0 ** (failures - 1))
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


NO_RETRY = Retry(deadline=0, attempts=1)


class Attempts:
    """The tries of one call: whether to try again after each failure, and how long to wait first."""

    def __init__(self, policy: Retry, retry: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy if retry else NO_RETRY
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Start counting afresh: a stream that reconnected gets the whole budget again."""
        self.started = self.clock()
        self.failures = 0

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds before trying again, or None: this answer stands (a success, or an error to raise)."""
        if response.status_code not in RETRY_STATUSES:
            return None
        self.failures += 1
        return self._again(_retry_after(response))

    def after_error(self, error: httpx.TransportError) -> float:
        """Seconds before trying again after no answer; UnreachableError once the budget is spent."""
        self.failures += 1
        delay = self._again(0.0) if isinstance(error, TRANSIENT) else None
        if delay is None:
            tries = f"{self.failures} tries" if self.failures > 1 else "1 try"
            message = f"no answer from offload after {tries}: {type(error).__name__}: {error}"
            raise UnreachableError(message) from error
        return delay

    def _again(self, floor: float) -> float | None:
        if self.failures >= self.policy.attempts:
            return None
        delay = max(min(floor, self.policy.max_delay), self.policy.delay(self.failures))
        if self.clock() + delay - self.started > self.policy.deadline:
            return None
        return delay


def _retry_after(response: httpx.Response) -> float:
    """The server's Retry-After in seconds (offload sends 1); 0 when absent or a date."""
    try:
        return float(response.headers.get("Retry-After", 0))
    except ValueError:
        return 0.0
