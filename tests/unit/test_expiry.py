"""Expiry before start (service/store/expiry.py): a job not started within its ttl is canceled unrun."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq.job import Job
from rq.registry import CanceledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcformat

from jobs.examples import word_count
from service.catalog import Registry
from service.store.expiry import SWEEP_BATCH, expired
from service.store.layout import COUNTERS_KEY, counter_field, intermediate_key, job_key, queue_key
from service.store.options import EnqueueOptions
from service.store.pause import pause
from service.worker.main import build_worker

EXPIRED_ERROR = {"type": "ExpiredError", "message": "not started within ttl 5 s"}
fresh = Registry()


@fresh.job(ttl=60)
def stale_soon(text: str = "") -> int:
    """A job that must start within a minute, or not at all."""
    return len(text)


def post(client: TestClient, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
    response = client.post(path, json=body, params=params)
    assert response.status_code == 202, response.text
    view: dict[str, Any] = response.json()
    return view


def backdate(connection: Redis, job_id: str, seconds: float) -> None:
    """As if the job had been queued `seconds` ago."""
    then = datetime.now(UTC) - timedelta(seconds=seconds)
    connection.hset(job_key(job_id), "enqueued_at", utcformat(then))


def stored_status(connection: Redis, job_id: str) -> str:
    status = Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status()
    assert status is not None
    return status.value


def expired_count(connection: Redis, name: str = "word_count") -> int:
    return int(connection.hget(COUNTERS_KEY, counter_field(name, "expired")) or 0)


@pytest.mark.parametrize("ttl", ["0", "-5", "1.5", "soon"])
def test_a_ttl_must_be_a_positive_whole_number_of_seconds(client: TestClient, ttl: str) -> None:
    response = client.post("/jobs/word_count", json={"text": "a"}, params={"ttl": ttl})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "ttl"]


def test_bad_ttls_are_refused_where_they_are_declared() -> None:
    with pytest.raises(ValueError, match="ttl is a whole number of seconds, at least 1; got 0"):
        EnqueueOptions(ttl=0)
    with pytest.raises(ValueError, match=r"ttl= is a whole number of seconds, at least 1; got -1"):
        Registry().job(ttl=-1)
    with pytest.raises(ValueError, match="got True"):
        Registry().job(ttl=True)


def test_a_job_past_its_ttl_is_canceled_unrun_by_the_worker_which_goes_on(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    stale = post(client, "/jobs/word_count", {"text": "too late"}, ttl=5)
    timely = post(client, "/jobs/word_count", {"text": "in time"}, ttl=5)
    backdate(connection, stale["id"], 6)
    pubsub = connection.pubsub()
    pubsub.subscribe(f"offload:events:{stale['id']}")
    run_jobs()
    view = client.get(f"/jobs/{stale['id']}").json()
    assert view["status"] == "canceled"
    assert view["error"] == EXPIRED_ERROR
    assert (view["started_at"], view["result"], view["attempts"]) == (None, None, 0)
    assert client.get(f"/jobs/{timely['id']}").json()["result"]["words"] == 2
    assert CanceledJobRegistry("default", connection=connection).get_job_ids() == [stale["id"]]
    assert not connection.llen(queue_key("default"))
    assert not connection.llen(intermediate_key("default"))
    messages = [pubsub.get_message(timeout=1) for _ in range(2)]
    assert any(m and m["type"] == "message" and m["data"] == b"canceled" for m in messages), messages
    assert expired_count(connection) == 1
    metrics = client.get("/metrics").text
    assert 'offload_job_runs_total{job="word_count",outcome="expired"} 1.0' in metrics


def test_a_job_within_its_ttl_runs(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    view = post(client, "/jobs/word_count", {"text": "a"}, ttl=5)
    backdate(connection, view["id"], 4)
    run_jobs()
    assert client.get(f"/jobs/{view['id']}").json()["status"] == "finished"
    assert expired_count(connection) == 0


def test_a_job_on_a_paused_queue_reads_canceled_once_past_its_ttl(
    client: TestClient, connection: Redis
) -> None:
    pause(connection, "low")
    view = post(client, "/jobs/word_count", {"text": "held"}, queue="low", ttl=5)
    assert client.get(f"/jobs/{view['id']}").json()["status"] == "queued"
    backdate(connection, view["id"], 6)
    read = client.get(f"/jobs/{view['id']}").json()
    assert (read["status"], read["error"]) == ("canceled", EXPIRED_ERROR)
    # Not only shown so: canceled in Redis, counted as such, off its queue.
    assert stored_status(connection, view["id"]) == "canceled"
    low = {queue["name"]: queue for queue in client.get("/queues").json()}["low"]
    assert (low["counts"]["queued"], low["counts"]["canceled"]) == (0, 1)
    listed = client.get("/jobs", params={"queue": "low"}).json()["jobs"]
    assert [job["status"] for job in listed] == ["canceled"]


def test_the_maintenance_sweep_cancels_expired_jobs_no_worker_reaches(connection: Redis) -> None:
    pause(connection, "low")
    jobs = [word_count.enqueue(connection, EnqueueOptions(queue="low", ttl=5), text="x") for _ in range(3)]
    keep = word_count.enqueue(connection, EnqueueOptions(queue="low"), text="no ttl")
    for job in jobs[:2]:
        backdate(connection, job.id, 6)
    build_worker(connection, kind="simple").clean_registries()  # type: ignore[no-untyped-call]
    assert [stored_status(connection, job.id) for job in jobs] == ["canceled", "canceled", "queued"]
    assert stored_status(connection, keep.id) == "queued"
    assert expired_count(connection) == 2
    assert SWEEP_BATCH >= 3


def test_the_ttl_counts_from_when_the_job_is_queued_not_while_it_waits_for_its_time(
    connection: Redis,
) -> None:
    job = word_count.enqueue(
        connection, EnqueueOptions(ttl=5, at=datetime.now(UTC) + timedelta(hours=1)), text="x"
    )
    assert job.get_status(refresh=True) == "scheduled"
    assert not expired(job, datetime.now(UTC) + timedelta(days=1))


def test_a_requeued_expired_job_gets_a_new_ttl_and_runs(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    view = post(client, "/jobs/word_count", {"text": "again"}, ttl=5)
    backdate(connection, view["id"], 6)
    assert client.get(f"/jobs/{view['id']}").json()["status"] == "canceled"
    requeued = client.post(f"/jobs/{view['id']}/requeue").json()
    assert (requeued["status"], requeued["error"]) == ("queued", None)
    run_jobs()
    assert client.get(f"/jobs/{view['id']}").json()["status"] == "finished"


def test_a_jobs_default_ttl_is_in_the_catalogue_and_an_option_overrides_it(
    make_client: Callable[..., TestClient], connection: Redis
) -> None:
    client = make_client(registry=fresh)
    [entry] = client.get("/catalog").json()
    assert entry["ttl"] == 60
    by_default = post(client, "/jobs/stale_soon", {"text": "a"})
    overridden = post(client, "/jobs/stale_soon", {"text": "a"}, ttl=5)
    ttls = [
        Job.fetch(v["id"], connection=connection, serializer=JSONSerializer).meta["ttl"]
        for v in (by_default, overridden)
    ]
    assert ttls == [60, 5]
    backdate(connection, by_default["id"], 30)
    backdate(connection, overridden["id"], 30)
    assert client.get(f"/jobs/{by_default['id']}").json()["status"] == "queued"
    assert client.get(f"/jobs/{overridden['id']}").json()["error"] == EXPIRED_ERROR
    assert expired_count(connection, "stale_soon") == 1
