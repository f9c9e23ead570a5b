"""callback_url: a signed POST of the job's final view, delivered by a job of its own."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Callback, Queue
from rq.serializers import JSONSerializer

from service.dev.receiver import Receiver, webhook_receiver
from service.worker.webhooks import SIGNATURE_HEADER, sign, verify

SECRET = "webhook-test-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP endpoint on loopback that records what it is sent."""
    with webhook_receiver() as endpoint:
        yield endpoint


@pytest.fixture
def hooked(make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The app with a webhook secret, and the same secret in the (burst) worker's environment."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://fakeredis.invalid:6379/0")
    return make_client(webhook_secret=SECRET)


def enqueue(client: TestClient, name: str, body: Any, **params: Any) -> dict[str, Any]:
    response = client.post(f"/jobs/{name}", json=body, params=params)
    assert response.status_code == 202, response.text
    view: dict[str, Any] = response.json()
    return view


def test_a_finished_job_is_posted_signed(
    hooked: TestClient, receiver: Receiver, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(hooked, "word_count", {"text": "a b"}, callback_url=receiver.url)
    assert view["callback"] == {
        "url": receiver.url, "status": "pending", "attempts": 0,
        "last_status_code": None, "last_error": None, "delivered_at": None,
    }  # fmt: skip
    run_jobs()
    [post] = receiver.posts
    headers, body = post.headers, post.body
    assert verify(SECRET, headers[SIGNATURE_HEADER.lower()], body)
    assert not verify("another secret", headers[SIGNATURE_HEADER.lower()], body)
    assert headers["content-type"] == "application/json"
    assert headers["offload-job-id"] == view["id"]
    payload = json.loads(body)
    assert payload["id"] == view["id"]
    assert payload["status"] == "finished"
    assert payload["result"]["words"] == 2
    after = hooked.get(f"/jobs/{view['id']}").json()["callback"]
    assert (after["status"], after["attempts"], after["last_status_code"]) == ("delivered", 1, 204)
    assert after["delivered_at"] is not None


def test_a_failed_job_is_posted_once_after_its_last_retry(
    hooked: TestClient, receiver: Receiver, run_jobs: Callable[[], None]
) -> None:
    enqueue(hooked, "always_fails", {"message": "nope"}, retries=0, callback_url=receiver.url)
    run_jobs()
    [post] = receiver.posts
    body = post.body
    payload = json.loads(body)
    assert payload["status"] == "failed"
    assert payload["error"] == {"type": "IntentionalFailureError", "message": "nope"}


def test_a_failure_that_will_be_retried_is_not_posted(
    hooked: TestClient, receiver: Receiver, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(hooked, "always_fails", {}, retries=1, callback_url=receiver.url)
    run_jobs()  # the retry is scheduled 1 s later: this burst does not reach it
    assert hooked.get(f"/jobs/{view['id']}").json()["status"] == "scheduled"
    assert receiver.posts == []


def test_an_endpoint_that_fails_is_retried_with_backoff(
    hooked: TestClient, receiver: Receiver, run_jobs: Callable[[], None], connection: Redis
) -> None:
    receiver.answer = 500
    view = enqueue(hooked, "word_count", {"text": "a"}, callback_url=receiver.url)
    run_jobs()
    assert len(receiver.posts) == 1
    callback = hooked.get(f"/jobs/{view['id']}").json()["callback"]
    assert (callback["status"], callback["attempts"], callback["last_status_code"]) == ("retrying", 1, 500)
    scheduled = hooked.get("/queues").json()
    webhooks = next(queue for queue in scheduled if queue["name"] == "webhooks")
    assert webhooks["counts"]["scheduled"] == 1  # the delivery's retry, 5 s later


def test_an_unreachable_endpoint_is_recorded(hooked: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(hooked, "word_count", {"text": "a"}, callback_url="http://127.0.0.1:9/nothing-here")
    run_jobs()
    callback = hooked.get(f"/jobs/{view['id']}").json()["callback"]
    assert callback["status"] == "retrying"
    assert callback["last_status_code"] is None
    assert callback["last_error"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "not a url", "javascript:alert(1)"]
)
def test_only_http_urls_are_accepted(hooked: TestClient, url: str) -> None:
    response = hooked.post("/jobs/word_count", json={"text": "a"}, params={"callback_url": url})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "callback_url"]


def test_callbacks_need_a_secret(client: TestClient) -> None:
    response = client.post(
        "/jobs/word_count", json={"text": "a"}, params={"callback_url": "http://x.invalid/"}
    )
    assert response.status_code == 422
    assert "WEBHOOK_SECRET" in response.json()["detail"][0]["msg"]


def evil(*args: Any) -> None:
    """A callback nobody registered: workers must never call it (the test replaces it)."""


def test_workers_refuse_callbacks_that_are_not_offloads(
    connection: Redis, run_jobs: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[str] = []
    monkeypatch.setattr(f"{__name__}.evil", lambda *args: called.append("evil"))
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    queue.enqueue("jobs.examples.word_count", text="a", on_success=Callback(f"{__name__}.evil"))
    run_jobs()
    assert called == []


def test_signatures_expire() -> None:
    body = b'{"id": "x"}'
    header = sign(SECRET, 1_000_000, body)
    assert verify(SECRET, header, body, now=1_000_100)
    assert not verify(SECRET, header, body, now=1_000_000 + 301)
    assert not verify(SECRET, header.replace("t=1000000", "t=1000001"), body, now=1_000_000)
    assert not verify(SECRET, "garbage", body)
