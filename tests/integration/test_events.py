"""Live job events over real HTTP: the Procfile's web and worker on a real Redis."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest
import redis

from service.dev.harness import Stack, wait_until
from service.store.layout import events_channel
from tests.integration.test_procfile_stack import enqueue
from tests.unit.test_routes_events import Event, parse_events

pytestmark = pytest.mark.integration

# Each read waits at most this long for the next event (the stream re-reads the job every second).
STREAM_TIMEOUT = httpx2.Timeout(10.0, read=5.0)


def stream_events(stack: Stack, job_id: str) -> list[Event]:
    """Every event of one stream, read until the server closes it."""
    with stack.client.stream("GET", f"/jobs/{job_id}/events", timeout=STREAM_TIMEOUT) as response:
        assert response.status_code == 200, f"{response.status_code}\n{stack.logs()}"
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_events(response.iter_lines()))


def test_progress_streams_in_order_then_the_end_with_the_result(stack: Stack) -> None:
    # Due a second from now: the stream is open before the first report even on a loaded machine
    # (one opened after a report gets it inside its first `status` event, not as `progress`).
    job = enqueue(stack, "process_items", {"items": 4, "delay": 0.3}, delay=1)

    events = stream_events(stack, job["id"])

    names = [name for name, _ in events]
    assert names[0] == "status", f"{events}\n{stack.logs()}"
    assert names[-1] == "end"
    assert set(names[1:-1]) <= {"status", "progress"}
    assert "started" in [data["status"] for name, data in events if name == "status"]
    fractions = [data["progress"]["fraction"] for name, data in events if name == "progress"]
    # Reports 0.3 s apart are each seen; the last one may arrive with the end instead.
    assert fractions == sorted(set(fractions)), events
    assert {0.5, 0.75} <= set(fractions) <= {0.25, 0.5, 0.75, 1.0}, events
    end: dict[str, Any] = events[-1][1]
    assert end["status"] == "finished"
    assert end["result"] == {"processed": 4}
    assert end["progress"] == {"fraction": 1.0, "message": "4/4 items"}


def test_a_client_connecting_after_the_end_gets_it_at_once(stack: Stack) -> None:
    job = enqueue(stack, "word_count", {"text": "to be or not to be"})
    assert stack.wait_for_job(job["id"], 10)["status"] == "finished", stack.logs()

    started = time.perf_counter()
    events = stream_events(stack, job["id"])
    elapsed = time.perf_counter() - started

    assert [name for name, _ in events] == ["end"]
    assert events[0][1]["result"]["words"] == 6
    assert elapsed < 1.0  # no wait for a re-read: an ended job's stream is its end


def test_an_unknown_job_is_a_404(stack: Stack) -> None:
    response = stack.client.get("/jobs/no-such-job/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"


def test_a_client_that_leaves_is_unsubscribed_at_once(stack: Stack) -> None:
    """Last in the module: its job keeps the worker busy for a few seconds more."""
    job = enqueue(stack, "very_long_task", {"seconds": 4})
    channel = events_channel(job["id"])
    observer = redis.Redis.from_url(stack.redis_url, socket_timeout=2)
    try:

        def subscribers() -> int:
            [(_, count)] = observer.pubsub_numsub(channel)
            return int(count)

        with stack.client.stream("GET", f"/jobs/{job['id']}/events", timeout=STREAM_TIMEOUT) as response:
            events = parse_events(response.iter_lines())  # kept: closing it would close the stream
            assert next(events)[0] == "status"
            assert subscribers() == 1
        # The job runs on: only the client's leaving can end this subscription now.
        assert wait_until(lambda: subscribers() == 0, timeout=2), stack.logs()
        status = stack.client.get(f"/jobs/{job['id']}").json()["status"]
        assert status in ("queued", "started"), status
        assert "Traceback" not in stack.processes["web"].tail(200)
    finally:
        observer.close()
