"""What a caller may ask of one enqueue: the options model every producer passes to `enqueue`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.store.layout import QUEUES, idempotency_key


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-enqueue overrides of a job's defaults; None keeps the default."""

    queue: str | None = None
    timeout: int | None = None
    retries: int | None = None
    result_ttl: int | None = None
    at: datetime | None = None  # run no earlier than this (timezone-aware); None: now
    # The `delay` a request asked for, which `at` is the time of: what a repeat of the request under
    # the same Idempotency-Key is compared on (its `at` is a little later each time).
    delay: float | None = None
    depends_on: tuple[str, ...] = ()
    allow_failure: bool = False  # dependents also run when a dependency failed
    at_front: bool = False
    callback_url: str | None = None  # POSTed the job's final view when it ends
    ttl: int | None = None  # seconds it may wait queued; not started by then: canceled (expiry.py)

    def __post_init__(self) -> None:
        if self.ttl is not None and (
            isinstance(self.ttl, bool) or not isinstance(self.ttl, int) or self.ttl < 1
        ):
            raise ValueError(f"ttl is a whole number of seconds, at least 1; got {self.ttl!r}")
        if self.callback_url is not None and not self.callback_url.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http:// or https:// URL")
        if self.queue is not None and self.queue not in QUEUES:
            raise ValueError(f"unknown queue {self.queue!r}; queues are {', '.join(QUEUES)}")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("`at` needs a timezone")
        if self.at is not None and self.depends_on:
            raise ValueError("a job waits for a time or for other jobs, not both")


@dataclass(frozen=True)
class Idempotency:
    """A client's key for a request: a replay returns the jobs the first one made."""

    key: str
    ttl: int

    @property
    def redis_key(self) -> str:
        return idempotency_key(self.key)


def retry_intervals(intervals: Sequence[int], retries: int) -> list[int]:
    """One interval per retry: the n-th retry waits the n-th interval, the last repeating.

    RQ picks the interval of a list by retries *left*, so a list longer than the retries
    would start at its end (`retries=1` with (10, 60, 300) would wait 300 s).
    """
    intervals = tuple(intervals) or (0,)
    return [intervals[min(n, len(intervals) - 1)] for n in range(retries)]
