"""Jobs with limits for tests/integration/test_flow_control.py (its stack runs JOBS_MODULE=this module).

Each records its own run in Redis as it starts and as it ends (`RUNS_KEY`, JSON): the test measures
the limits from the jobs' own clocks, not from what offload says of them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from pydantic import Field

from service.catalog import current_job, job, retry_after

JOBS_MODULE = __name__
RUNS_KEY = "flowtest:runs"
CAP = 2
RATE = 4  # a second, per account


def _record(kind: str, key: str, event: str) -> None:
    current = current_job()
    assert current is not None
    entry = {"job": current.id, "kind": kind, "key": key, "event": event, "at": time.time()}
    current.connection.rpush(RUNS_KEY, json.dumps(entry))


@job(concurrency=CAP, concurrency_key="customer_id", timeout=30)
def capped_sleep(customer_id: str, seconds: Annotated[float, Field(ge=0, le=5)] = 0.2) -> None:
    """At most CAP running per customer: sleeps, recording its start and end."""
    _record("capped", customer_id, "start")
    time.sleep(seconds)
    _record("capped", customer_id, "end")


@job(concurrency=CAP, concurrency_key="customer_id", timeout=30)
async def capped_wait(customer_id: str, seconds: Annotated[float, Field(ge=0, le=5)] = 0.2) -> None:
    """The async way, under its own cap (a cap is per job name): waits, recording its start and end."""
    _record("capped_async", customer_id, "start")
    await asyncio.sleep(seconds)
    _record("capped_async", customer_id, "end")


@job(rate_limit=f"{RATE}/second", rate_key="account_id", timeout=30)
def rated(account_id: str) -> None:
    """At most RATE starts a second per account: records its start."""
    _record("rated", account_id, "start")


@job(concurrency=CAP, concurrency_key="customer_id", timeout=30)
def fair(customer_id: str, seconds: Annotated[float, Field(ge=0, le=5)] = 0.01) -> None:
    """A short job for the fairness flood: records its start."""
    _record("fair", customer_id, "start")
    time.sleep(seconds)


@job(timeout=30)
def plain(n: int = 0) -> int:
    """No limit at all: runs beside the limited ones."""
    _record("plain", "-", "start")
    return n


@job(timeout=30, retries=1)
def backs_off(after: Annotated[float, Field(ge=0, le=10)] = 1) -> str:
    """Asks once to run again `after` seconds later (an upstream's 429), then runs."""
    current = current_job()
    assert current is not None
    if not current.meta.get("retry_after"):
        _record("backs_off", "-", "asked")
        retry_after(after, "upstream said 429")
    _record("backs_off", "-", "start")
    return "done"
