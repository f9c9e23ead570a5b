"""The Python client on the real stack, and nothing else: every call below goes through it.

It enqueues, waits, follows events to the end; the web killed (`kill -9`) in the middle of an
enqueue or of a stream is restarted, and the call carries on: one job, no event twice. A webhook
that the worker signed is checked with `verify_webhook`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from offload_client import AsyncClient, Client, JobEvent, JobView, OffloadError, Retry, verify_webhook
from service.dev.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT,
    WEBHOOK_SECRET,
    Stack,
    StartRedis,
    child_env,
    procfile_commands,
    running_stack,
    start_logged,
    wait_until,
)
from service.dev.receiver import webhook_receiver

pytestmark = pytest.mark.integration

# Room for a web restart (a new uvicorn takes 1-3 s here) and then some.
RESTART_RETRY = Retry(deadline=30.0, max_delay=0.5)


def offload(stack: Stack, **options: Any) -> Client:
    # trust_env=False: a proxy from the environment must not sit between the client and loopback.
    return Client(stack.base_url, trust_env=False, **options)


class Counting(httpx.HTTPTransport):
    """httpx's own transport, counting the requests the client sends through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(f"{request.method} {request.url.path}")
        return super().handle_request(request)


def test_enqueue_wait_and_follow_a_job_to_its_end(stack: Stack) -> None:
    with offload(stack) as client:
        # Due a second from now: the stream is open before the first report, however busy the machine.
        job = client.jobs.process_items(items=4, delay=0.3, options={"delay": 1})
        events = list(client.events(job, timeout=30))
        ended = client.wait(job, timeout=10)
    kinds = [event.kind for event in events]
    assert kinds[0] == "status", (events, stack.logs())
    assert kinds[-1] == "end"
    assert "progress" in kinds
    fractions = [e.job.progress.fraction for e in events if e.kind == "progress" and e.job.progress]
    assert fractions == sorted(set(fractions))
    assert events[-1].job.status == ended.status == "finished"
    assert ended.result == {"processed": 4}


def test_the_asyncio_client_does_the_same(stack: Stack) -> None:
    async def run() -> tuple[JobView, list[JobEvent]]:
        async with AsyncClient(stack.base_url, trust_env=False) as client:
            job = await client.jobs.wait_for_all(waits=[0.2, 0.6, 0.4])
            return job, [event async for event in client.events(job, timeout=30)]

    job, events = asyncio.run(run())
    assert events[-1].kind == "end", (events, stack.logs())
    assert events[-1].job.id == job.id
    assert events[-1].job.result["longest"] == 0.6


def test_a_webhook_is_verified_with_the_clients_helper(stack: Stack) -> None:
    with webhook_receiver() as receiver, offload(stack) as client:
        job = client.jobs.word_count(text="signed and delivered", options={"callback_url": receiver.url})
        [post] = receiver.wait(1, timeout=30)
    headers, body = post.headers, post.body
    assert verify_webhook(WEBHOOK_SECRET, headers, body)
    assert not verify_webhook("another secret", headers, body)
    assert not verify_webhook(WEBHOOK_SECRET, headers, body.replace(b"finished", b"failed"))
    view = JobView.model_validate_json(body)
    assert (view.id, view.status, view.result["words"]) == (job.id, "finished", 3)


def test_an_enqueue_survives_a_web_restart_mid_call_with_one_job(
    start_redis: StartRedis, tmp_path: Path
) -> None:
    redis_url = start_redis(tmp_path / "redis").url
    text = f"restart-{time.time_ns()}"
    # No worker: the job stays queued, so `wait` holds the request open after the job is written,
    # and the kill lands between the write and the answer: the case a retry must not duplicate.
    with running_stack(redis_url, tmp_path / "first", names=("web",)) as stack:
        transport = Counting()
        outcome: dict[str, Any] = {}
        with offload(stack, retry=RESTART_RETRY, transport=transport) as client, offload(stack) as observer:

            def enqueue() -> None:
                try:
                    outcome["job"] = client.jobs.word_count(text=text, options={"wait": 3})
                except Exception as exc:  # reported by the assertions below
                    outcome["error"] = exc

            caller = threading.Thread(target=enqueue)
            caller.start()
            assert wait_until(lambda: listed(observer, text), 10), stack.logs()
            with restarted_web(stack, tmp_path):
                caller.join(60)
                assert not caller.is_alive()
                assert "error" not in outcome, f"{outcome['error']!r}\n{stack.logs()}"
                jobs = listed(observer, text)
    job: JobView = outcome["job"]
    assert [j.id for j in jobs] == [job.id]
    assert job.status == "queued"
    posts = [sent for sent in transport.sent if sent.startswith("POST")]
    assert len(posts) >= 2, transport.sent  # the dropped try, then the one after the restart


def test_events_follow_a_job_through_a_web_restart(start_redis: StartRedis, tmp_path: Path) -> None:
    redis_url = start_redis(tmp_path / "redis").url
    transport = Counting()
    with (
        running_stack(redis_url, tmp_path / "first") as stack,
        offload(stack, retry=RESTART_RETRY, transport=transport) as client,
    ):
        job = client.jobs.process_items(items=20, delay=0.25)
        events = client.events(job, timeout=60)
        seen = [next(events)]
        assert wait_until(lambda: client.get(job).progress is not None, 10), stack.logs()
        with restarted_web(stack, tmp_path):
            seen += list(events)
    kinds = [event.kind for event in seen]
    assert kinds[-1] == "end", (kinds, stack.logs())
    assert kinds.count("end") == 1
    states = [(e.job.status, e.job.progress.message if e.job.progress else None) for e in seen]
    assert len(states) == len(set(states)), seen  # nothing yielded twice across the reconnect
    assert seen[-1].job.result == {"processed": 20}
    streams = [sent for sent in transport.sent if sent.endswith("/events")]
    assert len(streams) >= 2, transport.sent  # the stream the kill cut, and the one after


def listed(client: Client, text: str) -> list[JobView]:
    return [job for job in client.list_jobs(name="word_count", limit=200).jobs if job.input["text"] == text]


@contextmanager
def restarted_web(stack: Stack, tmp_path: Path) -> Iterator[None]:
    """Kill the stack's web (no graceful shutdown: connections drop), start another on its port."""
    killed = stack.processes["web"]
    os.killpg(killed.popen.pid, signal.SIGKILL)
    killed.popen.wait(10)
    time.sleep(0.5)  # clients find nobody listening for a while
    port = stack.base_url.rsplit(":", 1)[1]
    env = child_env(REDIS_URL=stack.redis_url, HOST=LOOPBACK, PORT=port)
    web = start_logged("web-again", procfile_commands()["web"], tmp_path / "web-again.log", env)
    try:
        assert wait_until(lambda: _answers(stack.base_url), STARTUP_TIMEOUT), web.tail()
        yield
    finally:
        web.stop()


def _answers(base_url: str) -> bool:
    with Client(base_url, timeout=1, trust_env=False) as client:  # a health check is never retried
        try:
            return client.health().status == "ok"
        except OffloadError:
            return False
