"""Jobs with flow control, in a catalogue of their own: the example catalogue (which the OpenAPI
schema and the client are made from) stays as it is."""

from __future__ import annotations

from typing import Literal

from service.catalog import Registry, current_job, retry_after

flow = Registry()


@flow.job(concurrency=2)
def capped(n: int = 0) -> int:
    """At most two queued or running at once."""
    return n


@flow.job(concurrency=1, concurrency_key="customer_id", queue="low")
def per_customer(customer_id: str, n: int = 0) -> int:
    """One at a time per customer."""
    return n


@flow.job(rate_limit="2/second")
def limited(n: int = 0) -> int:
    """At most two starts a second."""
    return n


@flow.job(rate_limit="3/minute", rate_key="account_id", concurrency=5)
def per_account(account_id: int, n: int = 0) -> int:
    """Three starts a minute per account, and five at once in all."""
    return n


@flow.job(retries=2)
def throttled(mode: Literal["once", "always", "async"] = "once") -> str:
    """Asks to run later on its first run (an upstream's 429); `always` never stops asking."""
    job = current_job()
    assert job is not None
    if mode == "always" or not job.meta.get("retry_after"):
        retry_after(5, "upstream said 429")
    return "done"


@flow.job()
async def throttled_async() -> str:
    """The async way: asks once, then runs."""
    job = current_job()
    assert job is not None
    if not job.meta.get("retry_after"):
        retry_after(0.2, "slow down")
    return "done"


@flow.job(concurrency=2, concurrency_key="customer_id", unique_by=("n",))
def unique_capped(customer_id: str, n: int) -> int:
    """Unique per `n`, and two at once per customer: both checks in the one enqueue script."""
    return n
