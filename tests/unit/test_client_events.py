"""`events(job)`: Server-Sent Events parsed, and followed across drops, 503s and the server's own
time limit without yielding anything twice; against scripted streams and against the app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from offload_client import AsyncClient, Client, JobEvent, NotFoundError, Retry, UnreachableError
from offload_client.events import SSEDecoder
from tests.unit.client_bridge import BASE_URL, QUICK_RETRY, AppBridge

JOB_ID = "0b7a7a9e-1f0e-4d5c-9a53-0a3c1f0e2b6d"


def view(status: str, fraction: float | None = None) -> dict[str, Any]:
    """A job's view as the stream's `data` carries it."""
    return {
        "id": JOB_ID,
        "name": "process_items",
        "status": status,
        "queue": "default",
        "input": {},
        "progress": None if fraction is None else {"fraction": fraction, "message": ""},
        "created_at": None,
        "enqueued_at": None,
        "started_at": None,
        "ended_at": None,
        "worker": None,
        "timeout": 60,
        "attempts": 0,
        "retries_left": None,
        "depends_on": [],
        "url": f"/jobs/{JOB_ID}",
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body sent in chunks that ends, or breaks like a dropped connection."""

    def __init__(self, *chunks: bytes, breaks: bool = False) -> None:
        self.chunks, self.breaks = chunks, breaks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.breaks:
            raise httpx.ReadError("connection lost")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


Answer = Stream | httpx.Response | Exception


def scripted(answers: list[Answer]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next answer (the last one repeats)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=answer)

    return httpx.MockTransport(handle), seen


def follow(
    answers: list[Answer], timeout: float = 5, retry: Retry = QUICK_RETRY
) -> list[tuple[str, str, Any]]:
    transport, _ = scripted(answers)
    with Client(BASE_URL, retry=retry, transport=transport) as client:
        return [summary(event) for event in client.events(JOB_ID, timeout=timeout)]


def summary(event: JobEvent) -> tuple[str, str, Any]:
    progress = event.job.progress
    return event.kind, event.job.status, progress.fraction if progress else None


def test_the_decoder_follows_the_event_stream_format() -> None:
    decoder = SSEDecoder()
    lines = [": ping", "", "event: status", 'data: {"a":', "data:1}", "id: 7", "", "data: plain", ""]
    assert [m for m in map(decoder.feed, lines) if m] == [("status", '{"a":\n1}'), ("message", "plain")]


def test_a_stream_dropped_midway_resumes_without_repeating_what_was_seen() -> None:
    first = Stream(
        sse("status", view("queued")),
        sse("status", view("started")),
        b": ping\n\n",
        sse("progress", view("started", 0.5)),
        breaks=True,
    )
    second = Stream(  # a new stream starts with the job as it is: seen already
        sse("status", view("started", 0.5)),
        sse("progress", view("started", 1.0)),
        sse("end", view("finished", 1.0)),
    )
    assert follow([first, second]) == [
        ("status", "queued", None),
        ("status", "started", None),
        ("progress", "started", 0.5),
        ("progress", "started", 1.0),
        ("end", "finished", 1.0),
    ]


def test_what_changed_while_away_is_named_by_what_changed() -> None:
    first = Stream(sse("status", view("started", 0.2)), breaks=True)
    second = Stream(sse("status", view("started", 0.8)), sse("end", view("failed", 0.8)))
    assert follow([first, second]) == [
        ("status", "started", 0.2),
        ("progress", "started", 0.8),
        ("end", "failed", 0.8),
    ]


def test_the_server_closing_on_its_time_limit_and_503s_are_reconnected() -> None:
    unavailable = httpx.Response(503, json={"detail": "Redis is unavailable"}, headers={"Retry-After": "0"})
    answers: list[Answer] = [
        Stream(sse("status", view("started")), sse("timeout", view("started"))),
        httpx.ConnectError("refused"),
        unavailable,
        Stream(sse("status", view("started")), sse("end", view("finished"))),
    ]
    assert follow(answers) == [("status", "started", None), ("end", "finished", None)]


def test_an_ended_job_gets_only_its_end(bridge: AppBridge, run_jobs: Callable[..., None]) -> None:
    with bridge.client() as offload:
        job = offload.jobs.word_count(text="a b")
        run_jobs()
        events = list(offload.events(job, timeout=5))
    assert [(e.kind, e.job.status, e.job.result["words"]) for e in events] == [("end", "finished", 2)]
    assert bridge.requests[-1].headers["Accept"] == "text/event-stream"


def test_an_unknown_job_is_a_404_at_once(bridge: AppBridge) -> None:
    with bridge.client() as offload, pytest.raises(NotFoundError, match="no job with id"):
        next(offload.events("no-such-job"))
    assert len(bridge.requests) == 1


def test_a_job_gone_midway_raises_not_found() -> None:
    gone = Stream(sse("status", view("queued")), sse("gone", {"detail": "no job with id 'x'"}))
    with pytest.raises(NotFoundError, match="the job's record is gone: no job with id 'x'"):
        follow([gone])


def test_the_timeout_ends_the_following_with_the_job_as_last_seen() -> None:
    never_ends = Stream(sse("status", view("queued")))  # closes, and again, and again
    events = follow([never_ends], timeout=0.2, retry=Retry(first_delay=0.01, max_delay=0.02, jitter=False))
    assert events == [("status", "queued", None), ("timeout", "queued", None)]


def test_reconnecting_gives_up_when_the_retry_budget_is_spent() -> None:
    answers: list[Answer] = [
        Stream(sse("status", view("queued")), breaks=True),
        httpx.ConnectError("refused"),
    ]
    transport, seen = scripted(answers)
    with Client(
        BASE_URL, retry=Retry(attempts=3, jitter=False, first_delay=0.001), transport=transport
    ) as client:
        events = client.events(JOB_ID)
        assert summary(next(events)) == ("status", "queued", None)
        with pytest.raises(UnreachableError, match="after 3 tries: ConnectError"):
            next(events)
    assert len(seen) == 3  # three tries: the stream that dropped, two reconnects


def test_the_async_client_follows_the_same_way() -> None:
    first = Stream(sse("status", view("started", 0.5)), breaks=True)
    second = Stream(sse("status", view("started", 0.5)), sse("end", view("finished", 1.0)))
    transport, seen = scripted([first, second])

    async def run() -> list[tuple[str, str, Any]]:
        async with AsyncClient(BASE_URL, retry=QUICK_RETRY, transport=transport) as client:
            return [summary(event) async for event in client.events(JOB_ID, timeout=5)]

    assert asyncio.run(run()) == [("status", "started", 0.5), ("end", "finished", 1.0)]
    assert len(seen) == 2
