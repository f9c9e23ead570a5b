"""Flow control as declared (service/flow.py): rates and keys checked at import; `retry_after` runs
the job again later on RQ's Retry, its retries unspent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from service.catalog import Registry
from service.flow import RETRY_AFTER_LIMIT, Rate, key_value, parse_rate, retry_after
from service.store.layout import COUNTERS_KEY, counter_field
from service.store.views import job_view
from tests.unit.flow_catalog import flow


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/minute", Rate(100, 60)),
        ("1/second", Rate(1, 1)),
        (" 5 / hours ", Rate(5, 3600)),
        ("10/sec", Rate(10, 1)),
        ("7/min", Rate(7, 60)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["100", "0/minute", "-1/minute", "1.5/second", "10/day", "10 per minute", ""]
)
def test_a_malformed_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="N/second, N/minute or N/hour"):
        parse_rate(text)


def _declare(**options: Any) -> None:
    registry = Registry()

    @registry.job(**options)
    def send(account_id: str, tags: list[str], n: int = 0) -> None:
        """A job to declare limits on."""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_limit": "100/fortnight"}, r"job 'send': rate_limit='100/fortnight' is not a rate"),
        ({"rate_limit": "1/second", "rate_key": "acount_id"}, r"'acount_id' is not a parameter.*account_id"),
        ({"concurrency": 2, "concurrency_key": "customer"}, r"concurrency_key='customer' is not a parameter"),
        ({"rate_key": "account_id"}, "rate_key= needs rate_limit="),
        ({"concurrency_key": "account_id"}, "concurrency_key= needs concurrency="),
        ({"concurrency": 0}, "concurrency= is a whole number, at least 1"),
        ({"concurrency": True}, "concurrency= is a whole number"),
        (
            {"concurrency": 1, "concurrency_key": "tags"},
            "a key parameter holds a string, an integer or a boolean",
        ),
    ],
)
def test_bad_declarations_fail_at_import(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _declare(**options)


def test_declared_limits_are_on_the_registered_job() -> None:
    registered = flow.get("per_account")
    assert registered is not None
    assert registered.flow is not None
    assert registered.flow.describe_rate() == "3/minute per account_id"
    assert registered.flow.describe_concurrency() == "5 at once"
    plain = flow.get("throttled")
    assert plain is not None
    assert plain.flow is None


def test_key_values_are_canonical() -> None:
    assert key_value({"k": "acme"}, "k") == "acme"
    assert key_value({"k": 42}, "k") == "42"
    assert key_value({"k": True}, "k") == "true"
    assert key_value({"k": "x" * 500}, "k").startswith("sha256:")


def test_retry_after_refuses_nonsense() -> None:
    for seconds in (-1, 86_401, "5", True):
        with pytest.raises(ValueError, match="0 to 86400"):
            retry_after(seconds)  # type: ignore[arg-type]


def _due_now(connection: Redis, job: Job) -> None:
    """Make a rescheduled job due and have RQ's scheduler queue it, as a worker's would."""
    registry = ScheduledJobRegistry(job.origin, connection=connection, serializer=JSONSerializer)
    connection.zadd(registry.key, {job.id: 0})
    queue = Queue(job.origin, connection=connection, serializer=JSONSerializer)
    scheduler = RQScheduler([queue], connection, serializer=JSONSerializer)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()


@pytest.mark.parametrize("name", ["throttled", "throttled_async"])
def test_retry_after_reschedules_without_spending_a_retry(
    connection: Redis, run_jobs: Callable[..., None], name: str
) -> None:
    registered = flow.get(name)
    assert registered is not None
    job = registered.enqueue(connection)
    run_jobs(flow)
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == (2 if name == "throttled" else None)  # unspent
    asked = job.meta["retry_after"]
    assert asked["count"] == 1
    assert asked["reason"] in ("upstream said 429", "slow down")
    view = job_view(job, flow)
    assert view.status == "scheduled"
    assert view.scheduled_for is not None
    assert view.retry_after is not None
    assert view.retry_after.reason == asked["reason"]
    assert view.error is None
    # Due no earlier than asked: RQ's own schedule would round the time down to the second.
    registry = ScheduledJobRegistry(job.origin, connection=connection, serializer=JSONSerializer)
    due = connection.zscore(registry.key, job.id)
    assert due is not None
    assert due >= datetime.fromisoformat(asked["at"]).timestamp()
    assert view.scheduled_for.timestamp() == due
    assert connection.hget(COUNTERS_KEY, counter_field(name, "retry_after")) == b"1"

    _due_now(connection, job)
    run_jobs(flow)
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == "done"
    assert job.retries_left == (2 if name == "throttled" else None)


def test_a_job_that_never_stops_asking_fails_at_the_limit(
    connection: Redis, run_jobs: Callable[..., None]
) -> None:
    registered = flow.get("throttled")
    assert registered is not None
    job = registered.enqueue(connection, mode="always")
    connection.hset(job.key, "number_of_retries", RETRY_AFTER_LIMIT)  # asked that often already
    run_jobs(flow)
    job.refresh()
    assert job.get_status() == JobStatus.FAILED
    view = job_view(job, flow)
    assert view.error is not None
    assert view.error.type == "RetryAfterLimitError"
