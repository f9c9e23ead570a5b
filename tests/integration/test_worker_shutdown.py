"""The Procfile's forking worker stopped the way Heroku and honcho stop it: signals to its process group.

(The concurrent worker's stop is in test_worker_concurrent.py.)"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from service.dev.harness import (
    LoggedProcess,
    Stack,
    StartRedis,
    StartStack,
    child_env,
    descendants,
    is_alive,
    procfile_commands,
    start_logged,
    wait_until,
)

pytestmark = pytest.mark.integration

# The grace period the worker gets in these tests (WORKER_GRACE_SECONDS), short to keep them quick.
GRACE = 2.0
FORK = {"WORKER_KIND": "fork"}  # one job at a time, in a work horse


def post_job(stack: Stack, seconds: float, **params: Any) -> dict[str, Any]:
    response = stack.client.post("/jobs/very_long_task", json={"seconds": seconds}, params=params)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def start_long_job(stack: Stack, seconds: float, **params: Any) -> dict[str, Any]:
    job = post_job(stack, seconds, **params)

    def started() -> bool:
        return bool(stack.client.get(f"/jobs/{job['id']}").json()["status"] == "started")

    assert wait_until(started, 10), stack.logs()
    return job


def restart_dyno(worker: LoggedProcess) -> None:
    """SIGTERM to every process of the worker, the work horse (own process group) too, as Heroku does."""
    for pid in {worker.popen.pid} | descendants(worker.popen.pid):
        os.kill(pid, signal.SIGTERM)


def view(stack: Stack, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = stack.client.get(f"/jobs/{job_id}").json()
    return job


def assert_requeued_at_front(stack: Stack, job_id: str, behind: str, retries_left: int) -> None:
    """Queued again ahead of `behind`, as before its run: no retry spent, no failure, no result."""
    requeued = view(stack, job_id)
    assert requeued["status"] == "queued", requeued
    assert requeued["retries_left"] == retries_left
    assert requeued["attempts"] == 0
    for trace in ("started_at", "ended_at", "worker", "progress", "error"):
        assert requeued[trace] is None, requeued
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        assert client.lrange("rq:queue:default", 0, -1) == [job_id, behind]
        assert job_id not in StartedJobRegistry("default", connection=client)
        assert job_id not in FailedJobRegistry("default", connection=client)
        assert client.xlen(Result.get_key(job_id)) == 0
    finally:
        client.close()


def test_sigterm_lets_the_running_job_finish(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url, env=FORK)
    worker = stack.processes["worker"]
    job = start_long_job(stack, 2)
    restart_dyno(worker)
    assert worker.popen.wait(20) == 0, worker.tail()
    assert "warm shut down requested" in worker.tail()
    ended = stack.client.get(f"/jobs/{job['id']}").json()
    assert ended["status"] == "finished", f"{ended}\n{worker.tail()}"
    assert ended["result"]["slept"] >= 2


def test_a_killed_worker_takes_its_work_horse_down(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url, env=FORK)
    worker = stack.processes["worker"]
    start_long_job(stack, 60)
    below = descendants(worker.popen.pid)
    assert below, "the worker has no child processes: no work horse?"
    os.killpg(worker.popen.pid, signal.SIGKILL)  # what honcho does when its grace period ends
    worker.popen.wait(10)
    # The horse sits in a process group of its own; only the kernel's parent-death signal stops it.
    assert wait_until(lambda: not any(is_alive(pid) for pid in below), 10), below


def test_a_job_longer_than_the_grace_period_goes_back_to_the_front_of_its_queue(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url, env={**FORK, "WORKER_GRACE_SECONDS": str(GRACE)})
    worker = stack.processes["worker"]
    job = start_long_job(stack, 4, retries=2)["id"]
    behind = post_job(stack, 0)["id"]
    signalled = time.monotonic()
    restart_dyno(worker)
    assert worker.popen.wait(GRACE + 5) == 0, worker.tail()
    stopped_after = time.monotonic() - signalled
    assert GRACE - 0.2 <= stopped_after < GRACE + 4, (stopped_after, worker.tail())
    assert "job requeued" in worker.tail(), worker.tail()
    assert_requeued_at_front(stack, job, behind, retries_left=2)

    # The next worker runs it first, to the end, once.
    env = child_env(REDIS_URL=stack.redis_url, **FORK)
    successor = start_logged("worker2", procfile_commands()["worker"], tmp_path / "worker2.log", env)
    try:
        ended = stack.wait_for_job(job, 20)
        assert ended["status"] == "finished", f"{ended}\n{successor.tail()}"
        assert ended["result"]["slept"] >= 4  # the whole job, from the start
        assert (ended["attempts"], ended["retries_left"]) == (1, 2)
        after = stack.wait_for_job(behind, 10)
        assert after["status"] == "finished", after
        # It was queued behind the requeued job, and ran after it.
        assert datetime.fromisoformat(after["started_at"]) >= datetime.fromisoformat(ended["ended_at"])
        client = redis.Redis.from_url(stack.redis_url)
        try:
            stored = Job.fetch(job, connection=client, serializer=JSONSerializer)
            results = Result.all(stored, serializer=JSONSerializer)
        finally:
            client.close()
        assert [result.type for result in results] == [Result.Type.SUCCESSFUL]
    finally:
        successor.stop()


def test_a_second_sigterm_requeues_the_running_job_at_once(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url, env=FORK)  # the default grace, 25 s
    worker = stack.processes["worker"]
    job = start_long_job(stack, 30, retries=1)["id"]
    behind = post_job(stack, 0)["id"]
    restart_dyno(worker)
    # RQ takes a second signal within 1 s of the first for the same stop: 1 s from when the worker
    # handled the first (it logs so), which on a loaded machine may be well after it was sent.
    assert wait_until(lambda: "warm shut down requested" in worker.tail(), 10), worker.tail()
    time.sleep(1.2)
    signalled = time.monotonic()
    os.kill(worker.popen.pid, signal.SIGTERM)
    assert worker.popen.wait(10) == 0, worker.tail()
    # At once, not after the 25 s grace: seconds at most for a worker at nice 19 on a busy machine.
    assert time.monotonic() - signalled < 5, worker.tail()
    assert_requeued_at_front(stack, job, behind, retries_left=1)
