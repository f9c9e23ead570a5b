"""Unique jobs on a real Redis: 100 identical POSTs racing through two web processes make one job."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis import Redis

from service.dev.harness import HTTP_TIMEOUT, StartRedis, new_client, running_stack
from service.store.layout import COUNTERS_KEY, UNIQUE_PREFIX, counter_field, queue_key

pytestmark = pytest.mark.integration

POSTS = 100
WEBS = 2  # racing across processes as well as within one process's command batcher


def test_racing_identical_posts_make_one_job(start_redis: StartRedis, tmp_path: Path) -> None:
    redis_url = start_redis(tmp_path / "redis").url
    with contextlib.ExitStack() as running:
        # No worker: the job stays queued, so every POST races for the same lock.
        stacks = [
            running.enter_context(running_stack(redis_url, tmp_path / f"web{n}", names=("web",)))
            for n in range(WEBS)
        ]
        clients = [running.enter_context(new_client(stack.base_url)) for stack in stacks]
        start = threading.Barrier(POSTS, timeout=HTTP_TIMEOUT)

        def post(n: int) -> tuple[int, str, str | None]:
            start.wait()  # all at once
            response = clients[n % WEBS].post("/jobs/sync_account", json={"account_id": 42, "seconds": 0})
            assert response.status_code in (200, 202), response.text
            return response.status_code, response.json()["id"], response.headers.get("Offload-Duplicate-Of")

        with ThreadPoolExecutor(POSTS) as pool:
            answers = list(pool.map(post, range(POSTS), timeout=3 * HTTP_TIMEOUT))

    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * (POSTS - 1) + [202], statuses
    [job_id] = {job_id for _, job_id, _ in answers}
    assert all(header == job_id for status, _, header in answers if status == 200)
    assert all(header is None for status, _, header in answers if status == 202)
    with Redis.from_url(redis_url) as redis:
        assert redis.lrange(queue_key("default"), 0, -1) == [job_id.encode()]
        assert redis.hget(COUNTERS_KEY, counter_field("sync_account", "enqueued")) == b"1"
        [lock] = redis.scan_iter(f"{UNIQUE_PREFIX}sync_account:*")
        assert redis.get(lock) == job_id.encode()
    print(f"{POSTS} racing POSTs through {WEBS} web processes: one job, {POSTS - 1} answered 200")
