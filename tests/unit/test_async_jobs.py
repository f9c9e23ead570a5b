"""`async def` jobs: registered like any job, run on an event loop in the worker, with progress,
errors, retries and the job's timeout (the coroutine is cancelled); what @job cannot run is
refused when it is declared."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.catalog import Registry, report_progress
from service.store.views import job_view


@pytest.fixture
def registry() -> Registry:
    return Registry()


def _fetch(connection: Redis, job: Job) -> Job:
    return Job.fetch(job.id, connection=connection, serializer=JSONSerializer)


def test_an_async_job_runs_on_an_event_loop_and_its_result_is_validated(
    registry: Registry, connection: Redis, run_jobs: Callable[..., None]
) -> None:
    @registry.job()
    async def add(a: int, b: int = 2) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        report_progress(0.5, "half")
        loop = asyncio.get_running_loop()
        return {"sum": a + b, "on_a_loop": loop.is_running()}

    assert add.is_async
    job = add.enqueue(connection, a="40")  # validated on enqueue, as the API does
    run_jobs(registry)
    done = _fetch(connection, job)
    assert done.get_status() == JobStatus.FINISHED
    assert done.return_value() == {"sum": 42, "on_a_loop": True}
    assert done.meta["progress"] == {"fraction": 0.5, "message": "half"}


def test_an_async_jobs_result_goes_through_its_return_type(
    registry: Registry, connection: Redis, run_jobs: Callable[..., None]
) -> None:
    @registry.job()
    async def later() -> tuple[int, ...]:
        return (1, 2)

    job = later.enqueue(connection)
    run_jobs(registry)
    assert _fetch(connection, job).return_value() == [1, 2]  # JSON, as its type dumps it


def test_an_async_jobs_error_is_recorded_and_retried(
    registry: Registry, connection: Redis, run_jobs: Callable[..., None]
) -> None:
    calls: list[int] = []

    @registry.job(retries=1, retry_intervals=(0,))
    async def flaky() -> None:
        calls.append(1)
        raise ValueError(f"attempt {len(calls)} failed")

    job = flaky.enqueue(connection)
    run_jobs(registry)  # the first attempt fails and is requeued at once ...
    run_jobs(registry)  # ... and the retry fails for good
    failed = _fetch(connection, job)
    assert failed.get_status() == JobStatus.FAILED
    assert len(calls) == 2
    view = job_view(failed, registry)
    assert view.error is not None
    assert (view.error.type, view.error.message) == ("ValueError", "attempt 2 failed")
    assert view.attempts == 2


def test_an_async_job_is_cancelled_at_its_timeout(
    registry: Registry, connection: Redis, run_jobs: Callable[..., None]
) -> None:
    seen: list[str] = []

    @registry.job(timeout=1)
    async def stuck() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        finally:
            seen.append("cleaned up")

    job = stuck.enqueue(connection)
    started = time.monotonic()
    run_jobs(registry)
    assert time.monotonic() - started < 10
    failed = _fetch(connection, job)
    assert failed.get_status() == JobStatus.FAILED
    view = job_view(failed, registry)
    assert view.error is not None
    assert view.error.type == "JobTimeoutException", view.error
    assert seen == ["cancelled", "cleaned up"]


def _generator() -> Iterator[int]:
    yield 1


async def _async_generator() -> AsyncIterator[int]:
    yield 1


def _plain(x: int) -> int:
    return x


class _Callable:
    def __call__(self, x: int) -> int:
        return x


@pytest.mark.parametrize(
    ("func", "name", "message"),
    [
        (_generator, None, "is a generator"),
        (_async_generator, None, "is a generator"),
        (lambda x: x, "anonymous", "not a lambda"),
        (functools.partial(_plain, 1), "partial", "takes a function"),
        (_Callable(), "instance", "takes a function"),
        (len, "builtin", "takes a function"),
    ],
)
def test_what_a_worker_cannot_run_is_refused_when_declared(
    registry: Registry, func: Any, name: str | None, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        registry.job(name=name)(func)
    assert len(registry) == 0
