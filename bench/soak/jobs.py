"""The soak's own jobs, beside the example jobs: a catalogue for the soak's stack only (JOBS_MODULE).

`python -m bench.soak` starts its web and workers with JOBS_MODULE=bench.soak.jobs, so `soak_step`
and `soak_limited` are endpoints of the soak's stack and of no deployment.
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import Field

import jobs  # noqa: F401  (the example jobs too: the soak's stack serves the whole catalogue)
from jobs.examples import IntentionalFailureError
from service.catalog import job

JOBS_MODULE = __name__


# Retries at once (interval 0): a run cut off by a killed worker runs again as soon as RQ finds it
# abandoned, without waiting for a scheduler. Cheap, so a soak measures the queue, not the work.
@job(queue="default", timeout=30, retries=2, retry_intervals=(0,))
def soak_step(
    n: Annotated[int, Field(ge=0)],
    fail: bool = False,
    ms: Annotated[float, Field(ge=0, le=1000)] = 5,
) -> dict[str, int]:
    """Load for `python -m bench.soak`: sleep `ms` milliseconds, then fail if asked, else return `n`."""
    time.sleep(ms / 1000)
    if fail:
        raise IntentionalFailureError(f"soak step {n} fails on purpose")
    return {"n": n}


# The same step under flow control: at most LIMITED_CAP queued or running per key (RQ's RateLimit)
# and LIMITED_RATE starts a second per key (offload's window), so kills land on capped runs and
# jobs wait, `rate_limited` or held, while workers die around them.
LIMITED_CAP = 2
LIMITED_RATE = 20
LIMITED_KEYS = 4


@job(
    queue="default",
    timeout=30,
    retries=2,
    retry_intervals=(0,),
    concurrency=LIMITED_CAP,
    concurrency_key="key",
    rate_limit=f"{LIMITED_RATE}/second",
    rate_key="key",
)
def soak_limited(
    n: Annotated[int, Field(ge=0)],
    key: str,
    fail: bool = False,
    ms: Annotated[float, Field(ge=0, le=1000)] = 5,
) -> dict[str, int]:
    """`soak_step` with a concurrency cap and a rate limit per `key`."""
    return soak_step(n, fail=fail, ms=ms)
