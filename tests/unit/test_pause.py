"""Pausing and resuming a queue (service/store/pause.py, the take in service/store/queues.py, the routes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq.utils import as_text

from jobs.examples import word_count
from service.settings import ApiKey
from service.store.errors import UnknownQueueError
from service.store.layout import PAUSED_KEY, wake_key
from service.store.options import EnqueueOptions
from service.store.pause import pause, paused_queues, resume
from service.store.wake import MAX_TOKENS
from service.worker.main import build_worker

ADMIN, READER = "a" * 24, "r" * 24


def post(client: TestClient, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
    response = client.post(path, json=body, params=params)
    assert response.status_code == 202, response.text
    view: dict[str, Any] = response.json()
    return view


def status(client: TestClient, job_id: str) -> str:
    value: str = client.get(f"/jobs/{job_id}").json()["status"]
    return value


def queues(client: TestClient) -> dict[str, dict[str, Any]]:
    return {queue["name"]: queue for queue in client.get("/queues").json()}


def test_a_paused_queue_accepts_jobs_and_workers_take_none_until_it_is_resumed(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    response = client.post("/queues/low/pause")
    assert response.status_code == 200, response.text
    assert response.json()["paused"] is True
    held = post(client, "/jobs/word_count", {"text": "held back"}, queue="low")
    other = post(client, "/jobs/word_count", {"text": "runs"}, queue="default")
    assert held["status"] == "queued"
    run_jobs()
    assert status(client, other["id"]) == "finished"
    assert status(client, held["id"]) == "queued"
    shown = queues(client)
    assert shown["low"]["paused"] is True
    assert shown["low"]["counts"]["queued"] == 1
    assert shown["default"]["paused"] is False

    response = client.post("/queues/low/resume")
    assert response.status_code == 200, response.text
    assert response.json() == {**shown["low"], "paused": False}
    run_jobs()
    assert status(client, held["id"]) == "finished"


def test_pausing_twice_and_resuming_an_unpaused_queue_are_harmless(client: TestClient) -> None:
    for _ in range(2):
        assert client.post("/queues/high/pause").json()["paused"] is True
    for _ in range(2):
        assert client.post("/queues/high/resume").json()["paused"] is False


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_an_unknown_queue_is_404_naming_the_queues(
    client: TestClient, connection: Redis, action: str
) -> None:
    response = client.post(f"/queues/nope/{action}")
    assert response.status_code == 404
    assert response.json() == {"detail": "no queue named 'nope'; queues are high, webhooks, default, low"}
    assert not connection.exists(PAUSED_KEY)


def test_pause_and_resume_take_the_admin_scope(make_client: Callable[..., TestClient]) -> None:
    keys = [
        ApiKey.model_validate({"name": "admin", "key": ADMIN, "scopes": ["admin"]}),
        ApiKey.model_validate({"name": "reader", "key": READER, "scopes": ["read", "enqueue"]}),
    ]
    secured = make_client(api_keys=keys)
    for action in ("pause", "resume"):
        assert secured.post(f"/queues/low/{action}").status_code == 401
        refused = secured.post(f"/queues/low/{action}", headers={"X-API-Key": READER})
        assert refused.status_code == 403
        assert refused.json() == {"detail": "this API key (reader) lacks the 'admin' scope"}
        assert secured.post(f"/queues/low/{action}", headers={"X-API-Key": ADMIN}).status_code == 200


def test_the_metrics_show_which_queues_are_paused(client: TestClient) -> None:
    client.post("/queues/webhooks/pause")
    families = {family.name: family for family in text_string_to_metric_families(client.get("/metrics").text)}
    gauge = {sample.labels["queue"]: sample.value for sample in families["offload_queue_paused"].samples}
    assert gauge == {"high": 0, "webhooks": 1, "default": 0, "low": 0}


def test_the_store_refuses_unknown_names_and_keeps_the_set(connection: Redis) -> None:
    with pytest.raises(UnknownQueueError):
        pause(connection, "rq:queue:default")
    assert pause(connection, "default") is True
    assert pause(connection, "default") is False
    assert paused_queues(connection) == {"default"}
    assert resume(connection, "default") is True
    assert resume(connection, "default") is False
    assert paused_queues(connection) == frozenset()


def test_a_worker_skips_a_paused_queue_for_the_next_one_with_work(connection: Redis) -> None:
    word_count.enqueue(connection, EnqueueOptions(queue="high"), text="paused")
    low = word_count.enqueue(connection, EnqueueOptions(queue="low"), text="taken")
    pause(connection, "high")
    worker = build_worker(connection, kind="simple")
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    assert (taken[0].id, taken[1].name) == (low.id, "low")
    assert worker.dequeue_job_and_maintain_ttl(None) is None  # only the paused queue has work


def test_resume_wakes_a_worker_per_queued_job_up_to_the_cap(connection: Redis) -> None:
    pause(connection, "low")
    for n in range(MAX_TOKENS + 5):
        word_count.enqueue(connection, EnqueueOptions(queue="low"), text=f"job {n}")
    connection.delete(wake_key("low"))  # as a worker that found nothing to take leaves it
    resume(connection, "low")
    assert [as_text(token) for token in connection.lrange(wake_key("low"), 0, -1)] == ["1"] * MAX_TOKENS
    connection.delete(wake_key("default"))
    resume(connection, "default")  # nothing queued: no token
    assert connection.llen(wake_key("default")) == 0
