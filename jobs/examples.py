"""Example jobs: the seed's slow task plus one of each kind of work a queue usually runs."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from service.catalog import job, report_progress


class IntentionalFailureError(RuntimeError):
    """Raised by `always_fails`, so failure handling can be seen end to end."""


@job(queue="default", timeout=3700, retries=0)
def very_long_task(seconds: Annotated[float, Field(ge=0, le=3600)] = 5) -> dict[str, float]:
    """Sleep for `seconds`, reporting progress each second: the seed's slow endpoint."""
    started = time.monotonic()
    remaining = seconds
    while remaining > 0:
        time.sleep(min(1.0, remaining))
        remaining = seconds - (time.monotonic() - started)
        report_progress(min(1.0, 1 - remaining / seconds), f"{max(remaining, 0):.1f} s left")
    return {"slept": round(time.monotonic() - started, 3)}


@job(queue="low", timeout=600)
def count_primes(limit: Annotated[int, Field(ge=2, le=50_000_000)] = 1_000_000) -> dict[str, int]:
    """CPU-bound: count the primes below `limit` with a sieve of Eratosthenes."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return {"limit": limit, "primes": sum(sieve)}


@job(queue="default", timeout=60)
def word_count(
    text: Annotated[str, Field(max_length=1_000_000)],
    top: Annotated[int, Field(ge=1, le=100)] = 10,
) -> dict[str, object]:
    """Text: count words (case-insensitive) and return the most common ones."""
    words = re.findall(r"[\w']+", text.lower())
    return {"words": len(words), "unique": len(set(words)), "top": Counter(words).most_common(top)}


@job(queue="default", timeout=30, retries=2, retry_intervals=(1, 2))
def always_fails(message: Annotated[str, Field(max_length=1000)] = "this job fails on purpose") -> None:
    """Fail on purpose, after its retries: shows how errors and retries look over HTTP."""
    raise IntentionalFailureError(message)


@job(queue="default", timeout=600)
def process_items(
    items: Annotated[int, Field(ge=1, le=10_000)] = 10,
    delay: Annotated[float, Field(ge=0, le=10)] = 0.2,
) -> dict[str, int]:
    """Work through `items` items, reporting progress after each one."""
    for done in range(1, items + 1):
        time.sleep(delay)
        report_progress(done / items, f"{done}/{items} items")
    return {"processed": items}


@job(queue="default", timeout=300)
async def wait_for_all(
    waits: Annotated[
        tuple[Annotated[float, Field(ge=0, le=60)], ...], Field(min_length=1, max_length=100)
    ] = (1.0, 2.0, 0.5),
) -> dict[str, float]:
    """I/O-bound, `async def`: wait on several things at once (sleeps standing in for HTTP calls),
    reporting each as it ends; it takes as long as the longest wait, not their sum."""
    started = time.monotonic()
    for done, finished in enumerate(asyncio.as_completed([asyncio.sleep(s) for s in waits]), 1):
        await finished
        report_progress(done / len(waits), f"{done}/{len(waits)} waits done")
    return {"waited": round(time.monotonic() - started, 3), "longest": max(waits)}


# Unique per account: while a sync of an account is queued or running, enqueueing another for the
# same account answers 200 with that job instead of queueing a second one (README: Unique jobs).
@job(queue="default", timeout=120, unique_by=("account_id",), unique_while="running")
def sync_account(
    account_id: Annotated[int, Field(ge=1)],
    seconds: Annotated[float, Field(ge=0, le=60)] = 1,
) -> dict[str, float]:
    """Unique per account_id while queued or running: sync one account (a sleep stands in for it)."""
    time.sleep(seconds)
    return {"account_id": account_id, "seconds": seconds}


# Every minute, on the lowest queue: cheap enough to run wherever the stack runs, frequent enough
# to see the clock work, and a liveness signal (alert when its last run is minutes old).
@job(queue="low", timeout=30, result_ttl=3600, cron="* * * * *")
def heartbeat() -> dict[str, str]:
    """Periodic (every minute, from the clock process): shows the clock and the workers at work."""
    return {"ran_at": datetime.now(UTC).isoformat(timespec="seconds")}
