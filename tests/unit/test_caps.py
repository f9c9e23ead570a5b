"""Concurrency caps on RQ's own RateLimit, through offload's enqueue, worker, views and controls: a
job waits `rate_limited` for a slot, and every way a job leaves its slot frees it for the next."""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from rq.job import Job, JobStatus
from rq.rate_limit import RateLimitRegistry
from rq.serializers import JSONSerializer

from service.store import control
from service.store.enqueue import enqueue
from service.store.expiry import expire
from service.store.layout import wake_key
from service.store.views import job_view, new_job_view
from tests.unit.flow_catalog import flow


def _registry(connection: Redis, key: str) -> RateLimitRegistry:
    return RateLimitRegistry(key, connection=connection)


def _status(connection: Redis, job_id: str) -> str:
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    status = job.get_status()
    assert status is not None
    return status.value


def test_capped_jobs_wait_for_a_slot_and_all_run(connection: Redis, run_jobs: Callable[..., None]) -> None:
    registered = flow.get("capped")
    assert registered is not None
    jobs = [registered.enqueue(connection, n=n) for n in range(5)]
    assert [job.get_status(refresh=False) for job in jobs] == [JobStatus.QUEUED] * 2 + [
        JobStatus.RATE_LIMITED
    ] * 3
    registry = _registry(connection, "capped")
    assert registry.get_allowed_job_count() == 2
    assert registry.get_rate_limited_job_count() == 3
    assert connection.llen(wake_key("default")) == 2  # one token per job let through

    waiting = job_view(jobs[4], flow)
    assert waiting.status == "rate_limited"
    assert waiting.held is not None
    assert (waiting.held.reason, waiting.held.limit, waiting.held.key) == ("concurrency", "2 at once", None)
    assert job_view(jobs[0], flow).held is None

    run_jobs(flow)
    assert [_status(connection, job.id) for job in jobs] == ["finished"] * 5
    assert registry.get_allowed_job_count() == 0
    assert registry.get_rate_limited_job_count() == 0


def test_a_cap_per_key_lets_each_key_through(connection: Redis, run_jobs: Callable[..., None]) -> None:
    registered = flow.get("per_customer")
    assert registered is not None
    first_a = registered.enqueue(connection, customer_id="a")
    second_a = registered.enqueue(connection, customer_id="a")
    first_b = registered.enqueue(connection, customer_id="b")
    assert first_a.get_status(refresh=False) == JobStatus.QUEUED
    assert second_a.get_status(refresh=False) == JobStatus.RATE_LIMITED
    assert first_b.get_status(refresh=False) == JobStatus.QUEUED  # b is not behind a
    view = job_view(second_a, flow)
    assert view.held is not None
    assert (view.held.limit, view.held.key) == ("1 at once per customer_id", "a")
    run_jobs(flow)
    assert {_status(connection, job.id) for job in (first_a, second_a, first_b)} == {"finished"}


def test_the_enqueue_answer_shows_a_job_waiting_for_its_slot(connection: Redis) -> None:
    registered = flow.get("per_customer")
    assert registered is not None
    inputs = [registered.input_model.model_validate({"customer_id": "z"}) for _ in range(2)]
    written = enqueue(connection, registered, inputs).jobs
    views = [new_job_view(job, registered.name, registered.flow) for job in written]
    assert [view.status for view in views] == ["queued", "rate_limited"]
    assert views[0].held is None
    assert views[1].held is not None
    assert views[1].held.reason == "concurrency"


def test_cancelling_frees_the_slot_for_the_next_job(connection: Redis) -> None:
    registered = flow.get("capped")
    assert registered is not None
    jobs = [registered.enqueue(connection, n=n) for n in range(4)]
    registry = _registry(connection, "capped")

    control.cancel(connection, jobs[3].id, flow)  # waiting: it leaves the line
    assert _status(connection, jobs[3].id) == "canceled"
    assert registry.get_rate_limited_job_ids() == [jobs[2].id]

    control.cancel(connection, jobs[0].id, flow)  # queued: its slot goes to the next in line
    assert _status(connection, jobs[2].id) == "queued"
    assert set(registry.get_allowed_job_ids()) == {jobs[1].id, jobs[2].id}


def test_an_expired_job_frees_its_slot(connection: Redis) -> None:
    registered = flow.get("capped")
    assert registered is not None
    jobs = [registered.enqueue(connection, n=n) for n in range(3)]
    assert expire(connection, jobs[0], "capped")
    assert _status(connection, jobs[0].id) == "canceled"
    assert _status(connection, jobs[2].id) == "queued"
    assert jobs[0].id not in _registry(connection, "capped").get_allowed_job_ids()


def test_a_unique_capped_job_is_checked_for_both_in_one_write(connection: Redis) -> None:
    registered = flow.get("unique_capped")
    assert registered is not None
    items = [("a", 1), ("a", 1), ("a", 2), ("a", 3), ("b", 4)]
    inputs = [registered.input_model.model_validate({"customer_id": c, "n": n}) for c, n in items]
    written = enqueue(connection, registered, inputs)
    assert written.duplicates == [1]  # the second n=1 got the first's job
    assert written.ids[1] == written.ids[0]
    assert [job.status for job in written.jobs] == ["queued", "queued", "rate_limited", "queued"]
    assert _registry(connection, "unique_capped:a").get_rate_limited_job_ids() == [written.ids[3]]
    again = enqueue(connection, registered, inputs[3:4])  # n=3 waits for a slot: still its job
    assert again.ids == [written.ids[3]]
    assert again.duplicates == [0]
