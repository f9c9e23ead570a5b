"""`AsyncClient`: the blocking client's calls, awaited, on the same shared requests and retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from offload_client import JobView, NotFoundError
from offload_client.events import EventKind
from tests.unit.client_bridge import AppBridge


def test_enqueue_retried_after_a_lost_answer_then_wait_and_follow(
    bridge: AppBridge, run_jobs: Callable[..., None]
) -> None:
    bridge.faults = ["refuse", "drop"]

    async def run() -> tuple[JobView, JobView, list[str], list[EventKind]]:
        async with bridge.async_client() as offload:
            job = await offload.jobs.word_count(text="a b a", top=1)
            listed = [j.id for j in (await offload.list_jobs(name="word_count")).jobs]
            run_jobs()
            ended = await offload.wait(job, timeout=5)
            kinds = [event.kind async for event in offload.events(job, timeout=5)]
            return job, ended, listed, kinds

    job, ended, listed, kinds = asyncio.run(run())
    assert listed == [job.id]
    assert (ended.status, ended.result) == ("finished", {"words": 3, "unique": 2, "top": [["a", 2]]})
    assert kinds == ["end"]
    assert len(set(bridge.keys()[:3])) == 1  # three tries of one enqueue


def test_batches_actions_and_errors(bridge: AppBridge) -> None:
    async def run() -> None:
        async with bridge.async_client() as offload:
            jobs = await offload.jobs.wait_for_all_batch([{"waits": [0.1]}, {}])
            assert [job.input for job in jobs] == [{"waits": [0.1]}, {"waits": [1.0, 2.0, 0.5]}]
            assert (await offload.cancel(jobs[0])).status == "canceled"
            await offload.delete(jobs[0])
            with pytest.raises(NotFoundError):
                await offload.get(jobs[0])
            assert (await offload.health()).status == "ok"

    asyncio.run(run())
