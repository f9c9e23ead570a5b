"""GET /jobs (filters, pagination), /queues and /workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from service.worker.main import build_worker


def post(client: TestClient, name: str, body: Any = None, **params: Any) -> str:
    response = client.post(f"/jobs/{name}", json=body, params=params)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def listing(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/jobs", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def every_page(client: TestClient, **params: Any) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = listing(client, **params, **({"cursor": cursor} if cursor else {}))
        ids += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


def test_jobs_are_listed_newest_first(client: TestClient) -> None:
    ids = [post(client, "word_count", {"text": str(n)}) for n in range(5)]
    page = listing(client)
    assert [job["id"] for job in page["jobs"]] == ids[::-1]
    assert page["next_cursor"] is None
    assert page["jobs"][0]["input"] == {"text": "4", "top": 10}


def test_pages_follow_each_other_without_gaps_or_repeats(client: TestClient) -> None:
    singles = [post(client, "word_count", {"text": "a"}) for _ in range(7)]
    response = client.post("/jobs/word_count/batch", json=[{"text": "b"}] * 6)
    batch = [job["id"] for job in response.json()]
    ids = every_page(client, limit=3)
    assert len(ids) == 13
    assert set(ids) == set(singles + batch)
    assert ids[-7:] == singles[::-1]


def test_filters(client: TestClient, run_jobs: Callable[[], None]) -> None:
    done = post(client, "word_count", {"text": "a"})
    failed = post(client, "always_fails", {}, retries=0)
    run_jobs()
    high = post(client, "word_count", {"text": "b"}, queue="high")
    primes = post(client, "count_primes", {"limit": 10}, queue="high")
    assert every_page(client, status="finished") == [done]
    assert every_page(client, status="failed") == [failed]
    assert every_page(client, status="queued") == [primes, high]
    assert every_page(client, queue="high") == [primes, high]
    assert every_page(client, name="word_count") == [high, done]
    assert every_page(client, name="word_count", queue="high") == [high]
    assert every_page(client, name="word_count", queue="high", status="finished") == []


def test_a_status_filter_pages_through_sparse_matches(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    wanted = post(client, "always_fails", {}, retries=0)
    run_jobs()
    for _ in range(30):
        post(client, "word_count", {"text": "a"})
    first = listing(client, status="failed", limit=2)
    assert first["jobs"] == []  # 8 newer queued jobs scanned, none failed
    assert first["next_cursor"] is not None
    assert every_page(client, status="failed", limit=2) == [wanted]


def test_expired_records_drop_out_of_the_listing(client: TestClient, connection: Redis) -> None:
    kept = post(client, "word_count", {"text": "a"})
    gone = post(client, "word_count", {"text": "b"})
    connection.delete(f"rq:job:{gone}")  # as its TTL would
    assert every_page(client) == [kept]
    assert connection.zscore("offload:index", gone) is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"queue": "urgent"}, "queue"),
        ({"name": "nope"}, "name"),
        ({"cursor": "garbage"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
    ],
)
def test_bad_filters_are_422(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/jobs", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", field]


def test_queues_count_jobs_per_status(client: TestClient, run_jobs: Callable[[], None]) -> None:
    post(client, "word_count", {"text": "a"})
    post(client, "always_fails", {}, retries=0)
    run_jobs()
    waiting_for = post(client, "word_count", {"text": "b"})
    post(client, "word_count", {"text": "c"}, delay=60)
    post(client, "word_count", {"text": "d"}, depends_on=waiting_for)
    canceled = post(client, "count_primes", {"limit": 10})
    client.post(f"/jobs/{canceled}/cancel")
    queues = {queue["name"]: queue["counts"] for queue in client.get("/queues").json()}
    assert list(queues) == ["high", "webhooks", "default", "low"]
    assert queues["default"] == {
        "queued": 1, "held": 0, "scheduled": 1, "deferred": 1, "canceled": 0, "started": 0, "finished": 1,
        "failed": 1,
    }  # fmt: skip
    assert queues["low"]["canceled"] == 1
    assert set(queues["high"].values()) == {0}


def test_workers_are_listed(client: TestClient, connection: Redis) -> None:
    assert client.get("/workers").json() == []
    worker: Any = build_worker(connection, kind="simple", name="w1")  # rq leaves register_* untyped
    worker.register_birth()
    try:
        [seen] = client.get("/workers").json()
    finally:
        worker.register_death()
    assert seen["name"] == "w1"
    assert seen["queues"] == ["high", "webhooks", "default", "low"]
    assert seen["current_job"] is None
    assert seen["successful_jobs"] == 0
