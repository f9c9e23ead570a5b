from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from service.catalog import Registry
from service.connection import connect
from service.dev.redis_server import free_port
from service.settings import Settings
from service.web.app import create_app


def enqueue(client: TestClient, name: str, body: Any = None, **params: Any) -> dict[str, Any]:
    response = client.post(f"/jobs/{name}", json=body, params=params)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/jobs/{response.json()['id']}"
    view: dict[str, Any] = response.json()
    return view


def read(client: TestClient, job_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/jobs/{job_id}", params=params)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def test_enqueue_answers_202_with_the_queued_job(client: TestClient) -> None:
    view = enqueue(client, "word_count", {"text": "to be or not to be"})
    assert view["status"] == "queued"
    assert view["name"] == "word_count"
    assert view["queue"] == "default"
    assert view["input"] == {"text": "to be or not to be", "top": 10}
    assert view["result"] is None
    assert view["error"] is None
    assert view["timeout"] == 60
    assert view["enqueued_at"] is not None
    assert view["url"] == f"/jobs/{view['id']}"


def test_a_queued_job_runs_and_its_result_comes_back(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(client, "word_count", {"text": "to be or not to be", "top": 2})
    run_jobs()
    done = read(client, view["id"])
    assert done["status"] == "finished"
    assert done["result"] == {"words": 6, "unique": 4, "top": [["to", 2], ["be", 2]]}
    assert done["started_at"] is not None
    assert done["ended_at"] is not None
    assert done["worker"]


def test_a_job_whose_input_has_only_defaults_needs_no_body(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(client, "count_primes", params={})
    assert view["input"] == {"limit": 1_000_000}
    assert view["queue"] == "low"
    run_jobs()
    assert read(client, view["id"])["result"] == {"limit": 1_000_000, "primes": 78498}


def test_a_missing_required_body_is_422(client: TestClient) -> None:
    response = client.post("/jobs/word_count")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": 5}, ["body", "text"]),
        ({"text": "x", "top": 0}, ["body", "top"]),
        ({"text": "x", "colour": "red"}, ["body", "colour"]),
        ({}, ["body", "text"]),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    client: TestClient, connection: Redis, body: dict[str, Any], field: list[str]
) -> None:
    response = client.post("/jobs/word_count", json=body)
    assert response.status_code == 422
    assert field in [error["loc"] for error in response.json()["detail"]]
    assert Queue("default", connection=connection).count == 0  # nothing half-written


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/jobs/word_count", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_unknown_job_name_is_404_listing_the_known_ones(client: TestClient) -> None:
    response = client.post("/jobs/os.system", json={})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert "no job named 'os.system'" in detail
    assert "very_long_task" in detail
    assert "word_count" in detail


def test_options_override_the_job_defaults(client: TestClient, connection: Redis) -> None:
    view = enqueue(client, "word_count", {"text": "a"}, queue="high", timeout=5, retries=3, result_ttl=60)
    assert view["queue"] == "high"
    assert view["timeout"] == 5
    assert view["retries_left"] == 3
    assert Queue("high", connection=connection, serializer=JSONSerializer).job_ids == [view["id"]]


@pytest.mark.parametrize(
    "params",
    [{"queue": "urgent"}, {"timeout": 0}, {"retries": -1}, {"retries": 99}, {"result_ttl": "soon"}],
)
def test_invalid_options_are_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.post("/jobs/word_count", json={"text": "a"}, params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


def test_a_failing_job_shows_its_error(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(client, "always_fails", {"message": "boom"}, retries=0)
    run_jobs()
    failed = read(client, view["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "IntentionalFailureError", "message": "boom"}
    assert failed["result"] is None


def test_retries_run_again_and_count_down(
    client: TestClient, make_client: Callable[..., TestClient], run_jobs: Callable[..., None]
) -> None:
    registry = Registry()
    attempts: list[int] = []

    @registry.job(retries=2, retry_intervals=(0,))
    def flaky(succeed_on: int) -> int:
        attempts.append(1)
        if len(attempts) < succeed_on:
            raise ValueError(f"attempt {len(attempts)} failed")
        return len(attempts)

    app = make_client(registry)
    view = enqueue(app, "flaky", {"succeed_on": 2})
    assert view["retries_left"] == 2
    run_jobs(registry)
    done = read(app, view["id"])
    assert done["status"] == "finished"
    assert done["result"] == 2
    assert done["retries_left"] == 1
    assert done["error"] is None

    attempts.clear()
    view = enqueue(app, "flaky", {"succeed_on": 10})
    run_jobs(registry)
    failed = read(app, view["id"])
    assert len(attempts) == 3
    assert failed["status"] == "failed"
    assert failed["error"] == {"type": "ValueError", "message": "attempt 3 failed"}
    assert failed["retries_left"] == 0


def test_progress_is_shown(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(client, "process_items", {"items": 4, "delay": 0})
    assert view["progress"] is None
    run_jobs()
    assert read(client, view["id"])["progress"] == {"fraction": 1.0, "message": "4/4 items"}


def test_unknown_job_id_is_404(client: TestClient) -> None:
    response = client.get("/jobs/no-such-job")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "no job with id 'no-such-job' (it never existed or its record expired)"
    }


@pytest.mark.parametrize("bad_id", ["has space", "semi;colon", "x" * 129])
def test_malformed_job_id_is_422(client: TestClient, bad_id: str) -> None:
    response = client.get(f"/jobs/{bad_id}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_wait_returns_at_once_for_an_ended_job(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    run_jobs()
    assert read(client, view["id"], wait=20)["status"] == "finished"


def test_wait_gives_up_after_the_time_asked(client: TestClient) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    assert read(client, view["id"], wait=0.2)["status"] == "queued"


def test_wait_wakes_when_the_job_ends(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(client, "word_count", {"text": "a b"})
    seen: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: seen.append(read(client, view["id"], wait=20)))
    waiter.start()
    time.sleep(0.3)  # the waiter is blocked on Redis by now; the worker needs the main thread
    run_jobs()
    waiter.join(10)
    assert not waiter.is_alive()
    assert seen[0]["status"] == "finished"
    assert seen[0]["result"]["words"] == 2


def test_wait_sees_an_end_that_writes_no_result(client: TestClient, connection: Redis) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    cancel = threading.Timer(0.2, lambda: connection.hset(f"rq:job:{view['id']}", "status", "canceled"))
    cancel.start()
    try:
        assert read(client, view["id"], wait=20)["status"] == "canceled"
    finally:
        cancel.join(10)


@pytest.mark.parametrize("wait", ["-1", "26", "soon"])
def test_wait_out_of_range_is_422(client: TestClient, wait: str) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    response = client.get(f"/jobs/{view['id']}", params={"wait": wait})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "wait"]


def test_a_body_over_the_limit_is_413(make_client: Callable[..., TestClient], connection: Redis) -> None:
    client = make_client(max_body_bytes=2048)
    response = client.post("/jobs/word_count", json={"text": "x" * 4096})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body is larger than the limit of 2048 bytes"}


def test_a_chunked_body_over_the_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=2048)

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    response = client.post("/jobs/word_count", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.fixture
def down_client(make_client: Callable[..., TestClient], settings: Settings) -> Iterator[TestClient]:
    """The app pointed at a loopback port where no Redis listens."""
    down = connect(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    with TestClient(create_app(settings, down)) as test_client:
        yield test_client
    down.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/jobs/word_count"), ("GET", "/jobs/some-id"), ("GET", "/readyz")],
)
def test_redis_down_is_503_with_a_clear_message(down_client: TestClient, method: str, path: str) -> None:
    response = down_client.request(method, path, json={"text": "a"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"].startswith("Redis is unavailable")
    assert "Traceback" not in response.text


def test_an_abandoned_job_says_so(client: TestClient, connection: Redis) -> None:
    """What RQ writes when a worker died mid-job and its heartbeat lapsed (registry cleanup)."""
    view = enqueue(client, "word_count", {"text": "a"}, retries=0)
    job = Job.fetch(view["id"], connection=connection, serializer=JSONSerializer)
    with connection.pipeline() as pipeline:
        record_job_failure(
            job, "Moved to FailedJobRegistry, due to AbandonedJobError, at 2026-11-26", pipeline
        )
        pipeline.execute()
    failed = read(client, view["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "AbandonedJobError"


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"queue": "high", "retries": 2, "timeout": 30, "result_ttl": 60},
        {"delay": 120},
        {"at_front": "true"},
        {"callback_url": "https://example.com/hook"},
    ],
)
def test_the_answer_to_an_enqueue_is_the_job_as_read_back(
    make_client: Callable[..., TestClient], params: dict[str, Any]
) -> None:
    """The common enqueue answers from what it wrote, without reading the job back: the same view."""
    client = make_client(webhook_secret="s" * 32)
    view = enqueue(client, "word_count", {"text": "a b"}, **params)
    assert view == read(client, view["id"])
    response = client.post("/jobs/word_count/batch", json=[{"text": "a"}, {"text": "b"}], params=params)
    assert response.status_code == 202, response.text
    assert response.json() == [read(client, item["id"]) for item in response.json()]


def test_enqueues_with_a_wait_dependencies_or_a_key_take_rqs_path_and_agree(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    first = enqueue(client, "word_count", {"text": "a"})
    keyed = client.post("/jobs/word_count", json={"text": "a"}, headers={"Idempotency-Key": "k1"})
    assert keyed.status_code == 202
    after = enqueue(client, "word_count", {"text": "b"}, depends_on=first["id"])
    assert after["status"] == "deferred"
    waited = enqueue(client, "word_count", {"text": "c"}, wait=0.1)
    assert waited["status"] == "queued"
    run_jobs()
    for view in (first, keyed.json(), after, waited):
        assert read(client, view["id"])["status"] == "finished"
