"""Enqueue options that decide when a job runs: delay/at, dependencies, retries and attempts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from service.catalog import Registry


def post(client: TestClient, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
    response = client.post(path, json=body, params=params)
    assert response.status_code == 202, response.text
    view: dict[str, Any] = response.json()
    return view


def read(client: TestClient, job_id: str) -> dict[str, Any]:
    view: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    return view


def test_delay_schedules_the_job(client: TestClient, connection: Redis) -> None:
    before = datetime.now(UTC)
    view = post(client, "/jobs/word_count", {"text": "a"}, delay=60)
    assert view["status"] == "scheduled"
    due = datetime.fromisoformat(view["scheduled_for"])
    assert before + timedelta(seconds=59) < due < datetime.now(UTC) + timedelta(seconds=61)
    assert ScheduledJobRegistry("default", connection=connection).get_job_ids() == [view["id"]]
    assert Queue("default", connection=connection).count == 0
    assert read(client, view["id"])["scheduled_for"] == view["scheduled_for"]


def test_a_delayed_job_is_not_due_before_its_delay(client: TestClient, connection: Redis) -> None:
    before = datetime.now(UTC)
    view = post(client, "/jobs/word_count", {"text": "a"}, delay=0.25)
    due = connection.zscore(ScheduledJobRegistry("default", connection=connection).key, view["id"])
    # Whole seconds, as RQ keeps them, rounded up: rounded down, it would be due at once.
    assert due is not None
    assert due == int(due) >= (before + timedelta(seconds=0.25)).timestamp()
    assert datetime.fromisoformat(view["scheduled_for"]).timestamp() == due


def test_a_delayed_enqueue_repeated_under_its_idempotency_key_is_a_replay(client: TestClient) -> None:
    # Each repeat computes a later time from the same delay: the request is the same all the same.
    key = {"Idempotency-Key": "delayed-once"}
    first = client.post("/jobs/word_count", json={"text": "a"}, params={"delay": 60}, headers=key)
    again = client.post("/jobs/word_count", json={"text": "a"}, params={"delay": 60}, headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    other = client.post("/jobs/word_count", json={"text": "a"}, params={"delay": 61}, headers=key)
    assert other.status_code == 409  # another delay: another request under the same key


def test_at_schedules_the_job(client: TestClient) -> None:
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    view = post(client, "/jobs/word_count", {"text": "a"}, at=at.isoformat())
    assert view["status"] == "scheduled"
    assert datetime.fromisoformat(view["scheduled_for"]) == at


def test_a_due_job_is_enqueued_by_the_scheduler(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    view = post(client, "/jobs/word_count", {"text": "a b"}, delay=0.5)
    registry = ScheduledJobRegistry("default", connection=connection, serializer=JSONSerializer)
    registry.schedule(registry.job_class.fetch(view["id"], connection=connection, serializer=JSONSerializer),
                      datetime.now(UTC) - timedelta(seconds=1))  # fmt: skip
    scheduler = RQScheduler(["default"], connection=connection, serializer=JSONSerializer)
    scheduler.acquire_locks()
    scheduler.enqueue_scheduled_jobs()
    scheduler.release_locks()
    assert read(client, view["id"])["status"] == "queued"
    run_jobs()
    assert read(client, view["id"])["result"]["words"] == 2


def test_an_at_just_past_runs_now(client: TestClient) -> None:
    at = datetime.now(UTC) - timedelta(seconds=1)
    assert post(client, "/jobs/word_count", {"text": "a"}, at=at.isoformat())["status"] == "queued"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"at": "2020-01-01T00:00:00Z"}, "`at` is in the past"),
        ({"at": "2099-01-01T00:00:00"}, "`at` needs a timezone"),
        ({"at": "2999-01-01T00:00:00Z"}, "more than a year away"),
        ({"at": "2099-01-01T00:00:00Z", "delay": 5}, "not both"),
        ({"delay": 5, "depends_on": "abc"}, "not both"),
    ],
)
def test_impossible_times_are_422(client: TestClient, params: dict[str, Any], message: str) -> None:
    response = client.post("/jobs/word_count", json={"text": "a"}, params=params)
    assert response.status_code == 422
    assert message in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("params", [{"delay": -1}, {"delay": 400 * 86400}, {"at": "tomorrow"}])
def test_malformed_times_are_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.post("/jobs/word_count", json={"text": "a"}, params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_a_dependent_waits_for_its_dependency(client: TestClient, run_jobs: Callable[[], None]) -> None:
    first = post(client, "/jobs/word_count", {"text": "a"})
    second = post(client, "/jobs/word_count", {"text": "a b"}, depends_on=[first["id"]])
    assert second["status"] == "deferred"
    assert second["depends_on"] == [first["id"]]
    run_jobs()
    assert read(client, first["id"])["status"] == "finished"
    assert read(client, second["id"])["status"] == "finished"


def test_a_dependency_already_done_lets_the_job_run_at_once(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    first = post(client, "/jobs/word_count", {"text": "a"})
    run_jobs()
    assert post(client, "/jobs/word_count", {"text": "b"}, depends_on=[first["id"]])["status"] == "queued"


def test_several_dependencies(client: TestClient, run_jobs: Callable[[], None]) -> None:
    a = post(client, "/jobs/word_count", {"text": "a"})
    b = post(client, "/jobs/word_count", {"text": "b"})
    both = post(client, "/jobs/word_count", {"text": "c"}, depends_on=[a["id"], b["id"]])
    assert both["status"] == "deferred"
    run_jobs()
    assert read(client, both["id"])["status"] == "finished"


def test_a_failed_dependency_holds_its_dependents(client: TestClient, run_jobs: Callable[[], None]) -> None:
    failing = post(client, "/jobs/always_fails", {}, retries=0)
    strict = post(client, "/jobs/word_count", {"text": "a"}, depends_on=[failing["id"]])
    lenient = post(client, "/jobs/word_count", {"text": "a"}, depends_on=[failing["id"]], allow_failure=True)
    run_jobs()
    assert read(client, failing["id"])["status"] == "failed"
    assert read(client, strict["id"])["status"] == "deferred"  # until the dependency is requeued
    assert read(client, lenient["id"])["status"] == "finished"


def test_unknown_dependencies_are_422(client: TestClient, connection: Redis) -> None:
    known = post(client, "/jobs/word_count", {"text": "a"})
    response = client.post(
        "/jobs/word_count", json={"text": "a"}, params={"depends_on": [known["id"], "nope", "gone"]}
    )
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "depends_on"]
    assert detail["msg"] == "depends_on names jobs that do not exist: nope, gone"
    assert Queue("default", connection=connection).count == 1


def test_malformed_dependency_ids_are_422(client: TestClient) -> None:
    response = client.post("/jobs/word_count", json={"text": "a"}, params={"depends_on": "a b"})
    assert response.status_code == 422


def test_attempts_and_retries_left_count_runs(
    make_client: Callable[..., TestClient], run_jobs: Callable[..., None]
) -> None:
    registry = Registry()

    @registry.job(retries=3, retry_intervals=(0,))
    def flaky() -> None:
        raise ValueError("always")

    client = make_client(registry)
    view = post(client, "/jobs/flaky", retries=2)
    assert (view["attempts"], view["retries_left"]) == (0, 2)
    run_jobs(registry)
    failed = read(client, view["id"])
    assert (failed["status"], failed["attempts"], failed["retries_left"]) == ("failed", 3, 0)


def test_timeout_option_kills_a_slow_run(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = post(client, "/jobs/very_long_task", {"seconds": 3}, timeout=1, retries=0)
    run_jobs()
    failed = read(client, view["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "JobTimeoutException"


def test_at_front_jumps_the_queue(client: TestClient, connection: Redis) -> None:
    first = post(client, "/jobs/word_count", {"text": "a"})
    urgent = post(client, "/jobs/word_count", {"text": "b"}, at_front=True)
    assert Queue("default", connection=connection).job_ids == [urgent["id"], first["id"]]


def test_enqueue_can_wait_for_the_end(client: TestClient) -> None:
    view = post(client, "/jobs/word_count", {"text": "a"}, wait=0.2)
    assert view["status"] == "queued"  # nobody runs it here; the wait ran out
