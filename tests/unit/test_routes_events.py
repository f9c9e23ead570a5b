from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from redis import Redis

from service.dev.redis_server import free_port
from service.settings import Settings
from service.store.layout import events_channel
from service.web.app import create_app
from tests.unit.test_routes_jobs import enqueue, read

Event = tuple[str, Any]


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """(event name, JSON data) per Server-Sent Event; comments (keep-alives) are skipped."""
    name = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))


def stream(client: TestClient, job_id: str, change: Callable[[], object] = lambda: None) -> list[Event]:
    """Every event of one stream, read until the server closes it; `change` made once the stream is
    open (the job read, the answer started): timed from the request instead, a slow machine made it
    before the first read."""
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert_event_stream(response)
        change()
        return list(parse_events(response.iter_lines()))


def assert_event_stream(response: Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"


def wait_for(predicate: Callable[[], bool], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_an_ended_job_gets_the_end_at_once(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(client, "word_count", {"text": "a b a"})
    run_jobs()
    events = stream(client, view["id"])
    assert [name for name, _ in events] == ["end"]
    assert events[0][1] == read(client, view["id"])  # the same view as GET /jobs/{id}
    assert events[0][1]["result"]["words"] == 3


def test_a_failed_job_ends_with_its_error(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = enqueue(client, "always_fails", {"message": "boom"}, retries=0)
    run_jobs()
    [(name, data)] = stream(client, view["id"])
    assert name == "end"
    assert data["status"] == "failed"
    assert data["error"] == {"type": "IntentionalFailureError", "message": "boom"}


def test_a_running_job_streams_its_changes_then_ends(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    view = enqueue(client, "process_items", {"items": 3, "delay": 0.2})
    events: list[Event] = []
    subscribed = threading.Event()

    def listen() -> None:
        with client.stream("GET", f"/jobs/{view['id']}/events") as response:
            assert_event_stream(response)
            for event in parse_events(response.iter_lines()):
                events.append(event)
                subscribed.set()  # the first event comes after the subscription

    listener = threading.Thread(target=listen)
    listener.start()
    assert subscribed.wait(10)
    run_jobs()  # the worker needs the main thread (signals); the stream is read in the other
    listener.join(10)
    assert not listener.is_alive()

    names = [name for name, _ in events]
    assert names[0] == "status"
    assert events[0][1]["status"] == "queued"
    assert ("status", "started") in [(name, data["status"]) for name, data in events]
    assert names[-1] == "end"
    assert set(names[1:-1]) <= {"status", "progress"}
    fractions = [data["progress"]["fraction"] for name, data in events if name == "progress"]
    assert fractions, names  # 0.2 s apart: each report is seen before the next
    assert fractions == sorted(set(fractions))
    end = events[-1][1]
    assert end["status"] == "finished"
    assert end["result"] == {"processed": 3}
    assert end["progress"] == {"fraction": 1.0, "message": "3/3 items"}


@pytest.mark.parametrize(
    ("name", "body", "announced"),
    [
        ("process_items", {"items": 2, "delay": 0}, ["started", "progress", "progress", "succeeded"]),
        ("always_fails", {}, ["started", "failed"]),
    ],
)
def test_workers_announce_each_change_once_saved(
    client: TestClient,
    connection: Redis,
    run_jobs: Callable[[], None],
    name: str,
    body: dict[str, Any],
    announced: list[str],
) -> None:
    view = enqueue(client, name, body, retries=0)
    pubsub = connection.pubsub()
    pubsub.subscribe(events_channel(view["id"]))
    try:
        run_jobs()
        messages = iter(lambda: pubsub.get_message(timeout=0.1), None)  # until none comes
        assert [m["data"].decode() for m in messages if m["type"] == "message"] == announced
    finally:
        pubsub.close()


def test_an_end_nobody_announces_is_seen_by_the_recheck(client: TestClient, connection: Redis) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    events = stream(client, view["id"], lambda: connection.hset(f"rq:job:{view['id']}", "status", "canceled"))
    assert [(name, data["status"]) for name, data in events] == [("status", "queued"), ("end", "canceled")]


def test_a_job_whose_record_goes_away_ends_the_stream(client: TestClient, connection: Redis) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    events = stream(client, view["id"], lambda: connection.delete(f"rq:job:{view['id']}"))
    assert [name for name, _ in events] == ["status", "gone"]
    assert "no job with id" in events[1][1]["detail"]


def test_redis_going_away_mid_stream_ends_it_with_a_reason(
    client: TestClient, fake_server: fakeredis.FakeServer
) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    try:  # Redis goes away once the stream is open
        events = stream(client, view["id"], lambda: setattr(fake_server, "connected", False))
    finally:
        fake_server.connected = True
    assert [name for name, _ in events] == ["status", "unavailable"]
    assert events[1][1]["detail"].startswith("Redis is unavailable")


def test_unknown_job_id_is_a_404_not_a_stream(client: TestClient) -> None:
    response = client.get("/jobs/no-such-job/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "detail": "no job with id 'no-such-job' (it never existed or its record expired)"
    }


def test_redis_down_is_a_503_not_a_stream(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with TestClient(create_app(down)) as client:  # the app's own clients, sync and asyncio
        response = client.get("/jobs/some-id/events")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"].startswith("Redis is unavailable")


def test_a_malformed_job_id_is_422(client: TestClient) -> None:
    response = client.get("/jobs/semi;colon/events")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_a_stream_closes_with_timeout_after_the_cap(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_stream_seconds=0.5)
    view = enqueue(client, "word_count", {"text": "a"})
    started = time.monotonic()
    events = stream(client, view["id"])
    assert time.monotonic() - started >= 0.5
    assert [(name, data["status"]) for name, data in events] == [("status", "queued"), ("timeout", "queued")]


def test_an_idle_stream_sends_keepalive_comments(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI's SSE response pings after this long without an event (15 s; private, made for tests).
    monkeypatch.setattr("fastapi.routing._PING_INTERVAL", 0.1)
    client = make_client(max_stream_seconds=0.5)
    view = enqueue(client, "word_count", {"text": "a"})
    with client.stream("GET", f"/jobs/{view['id']}/events") as response:
        lines = list(response.iter_lines())
    assert ": ping" in lines


def test_a_client_that_leaves_is_unsubscribed_and_leaves_no_task(
    client: TestClient, connection: Redis
) -> None:
    view = enqueue(client, "word_count", {"text": "a"})
    channel = events_channel(view["id"])

    async def count_tasks() -> int:
        return len(asyncio.all_tasks())

    def subscribers() -> int:
        [(_, count)] = connection.pubsub_numsub(channel)
        return int(count)

    portal = client.portal  # the event loop the app runs in
    assert portal is not None
    tasks_before = portal.call(count_tasks)
    with client.stream("GET", f"/jobs/{view['id']}/events") as response:
        events = parse_events(response.iter_lines())  # kept: closing it would close the stream
        name, data = next(events)
        assert (name, data["status"]) == ("status", "queued")
        assert subscribers() == 1
        assert portal.call(count_tasks) > tasks_before
    # Leaving the block closes the connection mid-stream, as a client that goes away does.
    assert wait_for(lambda: subscribers() == 0)
    assert wait_for(lambda: portal.call(count_tasks) == tasks_before)


def test_openapi_documents_the_event_stream(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/jobs/{job_id}/events"]["get"]
    assert (
        operation["description"]
        == "Stream a job's status and progress changes as Server-Sent Events until it ends."
    )
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "404" in operation["responses"]
