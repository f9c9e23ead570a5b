"""Batches and Idempotency-Key replays over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer


def queued(connection: Redis, name: str = "default") -> list[str]:
    ids: list[str] = Queue(name, connection=connection, serializer=JSONSerializer).job_ids
    return ids


def test_a_batch_enqueues_every_item_in_order(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    response = client.post("/jobs/word_count/batch", json=[{"text": "a"}, {"text": "b c"}, {"text": "d e f"}])
    assert response.status_code == 202, response.text
    views = response.json()
    assert [view["input"]["text"] for view in views] == ["a", "b c", "d e f"]
    assert [view["status"] for view in views] == ["queued"] * 3
    assert queued(connection) == [view["id"] for view in views]
    run_jobs()
    results = [client.get(f"/jobs/{view['id']}").json()["result"]["words"] for view in views]
    assert results == [1, 2, 3]


def test_a_batch_takes_the_enqueue_options(client: TestClient, connection: Redis) -> None:
    response = client.post("/jobs/count_primes/batch", json=[{}, {"limit": 10}], params={"queue": "high"})
    assert response.status_code == 202
    assert [view["queue"] for view in response.json()] == ["high", "high"]
    assert len(queued(connection, "high")) == 2


def test_one_invalid_item_refuses_the_whole_batch(client: TestClient, connection: Redis) -> None:
    response = client.post("/jobs/word_count/batch", json=[{"text": "ok"}, {"text": 5}, {"txt": "x"}])
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    assert ["body", 1, "text"] in locations
    assert ["body", 2, "text"] in locations
    assert queued(connection) == []


@pytest.mark.parametrize("body", [[], {"text": "not a list"}, "text"])
def test_a_batch_must_be_a_non_empty_list(client: TestClient, body: Any) -> None:
    assert client.post("/jobs/word_count/batch", json=body).status_code == 422


def test_a_batch_over_the_limit_is_413(make_client: Callable[..., TestClient], connection: Redis) -> None:
    client = make_client(max_batch_size=2)
    response = client.post("/jobs/word_count/batch", json=[{"text": "a"}] * 3)
    assert response.status_code == 413
    assert response.json() == {"detail": "a batch holds at most 2 items, not 3"}
    assert queued(connection) == []


def test_a_batch_of_an_unknown_job_is_404(client: TestClient) -> None:
    response = client.post("/jobs/nope/batch", json=[{}])
    assert response.status_code == 404
    assert "known jobs" in response.json()["detail"]


def test_a_replayed_post_returns_the_same_job(client: TestClient, connection: Redis) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/jobs/word_count", json={"text": "a"}, headers=headers)
    again = client.post("/jobs/word_count", json={"text": "a"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert queued(connection) == [first.json()["id"]]


def test_a_replay_matches_on_meaning_not_on_bytes(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k", "content-type": "application/json"}
    first = client.post("/jobs/word_count", content=b'{"text": "a", "top": 10}', headers=headers)
    again = client.post("/jobs/word_count", content=b'{"top":10,"text":"a"}', headers=headers)
    assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize(
    ("path", "body", "params"),
    [
        ("/jobs/word_count", {"text": "b"}, {}),
        ("/jobs/word_count", {"text": "a"}, {"queue": "high"}),
        ("/jobs/count_primes", {}, {}),
    ],
)
def test_the_same_key_for_another_request_is_409(
    client: TestClient, connection: Redis, path: str, body: Any, params: dict[str, str]
) -> None:
    headers = {"Idempotency-Key": "reused"}
    assert client.post("/jobs/word_count", json={"text": "a"}, headers=headers).status_code == 202
    response = client.post(path, json=body, params=params, headers=headers)
    assert response.status_code == 409
    assert "already used for a different request" in response.json()["detail"]
    assert len(queued(connection)) == 1


def test_a_replayed_batch_returns_the_same_jobs(client: TestClient, connection: Redis) -> None:
    headers = {"Idempotency-Key": "batch-1"}
    items = [{"text": "a"}, {"text": "b"}]
    first = client.post("/jobs/word_count/batch", json=items, headers=headers)
    again = client.post("/jobs/word_count/batch", json=items, headers=headers)
    assert [view["id"] for view in first.json()] == [view["id"] for view in again.json()]
    assert len(queued(connection)) == 2


def test_idempotency_keys_expire(make_client: Callable[..., TestClient], connection: Redis) -> None:
    client = make_client(idempotency_ttl=60)
    client.post("/jobs/word_count", json={"text": "a"}, headers={"Idempotency-Key": "short"})
    keys = connection.keys("offload:idempotency:*")
    assert len(keys) == 1
    assert 0 < connection.ttl(keys[0]) <= 60


def test_concurrent_replays_make_one_job(client: TestClient, connection: Redis) -> None:
    def post(_: int) -> str:
        response = client.post("/jobs/word_count", json={"text": "a"}, headers={"Idempotency-Key": "race"})
        assert response.status_code == 202
        job_id: str = response.json()["id"]
        return job_id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(post, range(16)))
    assert len(ids) == 1
    assert queued(connection) == list(ids)


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_a_malformed_key_is_422(client: TestClient, key: str) -> None:
    response = client.post("/jobs/word_count", json={"text": "a"}, headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
