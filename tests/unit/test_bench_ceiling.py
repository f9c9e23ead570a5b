"""bench/ceiling.py: its one-thread loops leave no-op jobs as a worker does, and refuse any other job."""

from __future__ import annotations

import asyncio

import pytest
from redis import Redis
from rq.job import Job, JobStatus

from bench.ceiling import drain, drain_async
from service.catalog import Registry, current_job
from service.serializer import JSON
from service.store.layout import intermediate_key, started_key
from service.worker.main import build_worker

DONE = "ceiling:done"


def test_the_ceiling_runs_and_ends_each_job_as_a_worker_does(connection: Redis) -> None:
    registry = Registry()

    @registry.job(queue="default")
    def tick() -> None:
        running = current_job()
        assert running is not None
        running.connection.rpush(DONE, running.id)

    jobs = [tick.enqueue(connection) for _ in range(40)]  # more than one batch
    worker = build_worker(connection, kind="concurrent", registry=registry)
    ran = drain(worker, lambda: connection.llen(DONE) >= len(jobs))
    assert ran == len(jobs)
    assert sorted(connection.lrange(DONE, 0, -1)) == sorted(job.id.encode() for job in jobs)
    for job in jobs:
        done = Job.fetch(job.id, connection=connection, serializer=JSON)
        assert done.get_status() == JobStatus.FINISHED
        assert done.latest_result() is not None
    assert connection.zcard(started_key("default")) == 0
    assert connection.llen(intermediate_key("default")) == 0


def test_the_async_ceiling_runs_jobs_at_once_on_its_loop_and_ends_each(connection: Redis) -> None:
    registry = Registry()
    waiting = 0
    most = 0  # jobs waiting at once

    @registry.job(queue="default")
    async def nap() -> None:
        nonlocal waiting, most
        waiting += 1
        most = max(most, waiting)
        await asyncio.sleep(0.01)
        waiting -= 1
        running = current_job()
        assert running is not None
        running.connection.rpush(DONE, running.id)

    jobs = [nap.enqueue(connection) for _ in range(30)]
    worker = build_worker(connection, kind="concurrent", registry=registry)
    ran = asyncio.run(drain_async(worker, lambda: connection.llen(DONE) >= len(jobs), slots=8))
    assert ran == len(jobs)
    assert 1 < most <= 8
    for job in jobs:
        assert Job.fetch(job.id, connection=connection, serializer=JSON).get_status() == JobStatus.FINISHED
    assert connection.zcard(started_key("default")) == 0


def test_the_ceiling_refuses_a_job_it_would_not_end_as_a_worker_does(connection: Redis) -> None:
    registry = Registry()

    @registry.job(queue="default", result_ttl=0)  # RQ's own end is needed: the job is deleted at once
    def forget() -> None:
        return None

    forget.enqueue(connection)
    worker = build_worker(connection, kind="concurrent", registry=registry)
    with pytest.raises(RuntimeError, match="not a plain no-op"):
        drain(worker, lambda: False)
