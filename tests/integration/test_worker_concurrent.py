"""The Procfile's worker with WORKER_CONCURRENCY: many jobs at once in one process, on real Redis.

Async jobs share one event loop and sync jobs run in threads; a kill -9 of the process has every job
it ran recovered like any killed worker's; SIGTERM lets the running jobs finish within the grace
period and puts the others back on their queue, none lost and no retry spent.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service.dev.harness import (
    Stack,
    StartRedis,
    StartStack,
    child_env,
    procfile_commands,
    start_logged,
    wait_until,
)
from service.worker.recovery import ABANDON_BOUND

pytestmark = pytest.mark.integration

GRACE = 2.0


def post(stack: Stack, name: str, body: dict[str, Any], **params: Any) -> str:
    response = stack.client.post(f"/jobs/{name}", json=body, params=params)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def view(stack: Stack, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = stack.client.get(f"/jobs/{job_id}").json()
    return job


def all_started(stack: Stack, job_ids: list[str], timeout: float = 15) -> None:
    started = wait_until(lambda: all(view(stack, j)["status"] == "started" for j in job_ids), timeout)
    assert started, stack.logs()


def test_one_process_runs_async_and_sync_jobs_at_once(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url, env={"WORKER_CONCURRENCY": "40"})
    waiting = [post(stack, "wait_for_all", {"waits": [3.0]}) for _ in range(30)]
    sleeping = [post(stack, "very_long_task", {"seconds": 3}) for _ in range(5)]
    jobs = waiting + sleeping
    all_started(stack, jobs)
    [worker] = stack.client.get("/workers").json()
    assert sorted(worker["current_jobs"]) == sorted(jobs)  # one worker, 35 claimed runs
    ended = [stack.wait_for_job(job_id, 30) for job_id in jobs]
    assert [job["status"] for job in ended] == ["finished"] * len(jobs), stack.logs()
    # All of them were running at once: each started before any ended.
    first_end = min(datetime.fromisoformat(job["ended_at"]) for job in ended)
    assert all(datetime.fromisoformat(job["started_at"]) < first_end for job in ended)
    assert {job["worker"] for job in ended} == {worker["name"]}


def test_a_killed_concurrent_worker_has_each_of_its_jobs_run_again(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url, env={"WORKER_CONCURRENCY": "5"})
    jobs = [post(stack, "very_long_task", {"seconds": 60}, retries=1) for _ in range(3)]
    all_started(stack, jobs)
    worker = stack.processes["worker"]
    os.kill(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait(10)
    killed_at = time.monotonic()
    replacement = start_logged(
        "worker2", procfile_commands()["worker"] + " --kind concurrent --concurrency 5",
        tmp_path / "worker2.log", child_env(REDIS_URL=stack.redis_url),
    )  # fmt: skip
    try:

        def rerun() -> bool:
            return all(
                view(stack, j)["status"] == "started" and view(stack, j)["retries_left"] == 0 for j in jobs
            )

        assert wait_until(rerun, ABANDON_BOUND + 15, interval=0.5), replacement.tail()
        print(f"after the kill: all three running again at {time.monotonic() - killed_at:.1f} s")
    finally:
        replacement.stop()


def test_sigterm_lets_running_jobs_finish_and_puts_the_rest_back(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    env = {"WORKER_CONCURRENCY": "4", "WORKER_GRACE_SECONDS": str(GRACE)}
    stack = start_stack(start_redis(tmp_path / "redis").url, env=env)
    worker = stack.processes["worker"]
    short = [post(stack, "very_long_task", {"seconds": 1}) for _ in range(2)]
    long = [post(stack, "very_long_task", {"seconds": 30}, retries=2) for _ in range(2)]
    all_started(stack, short + long)
    signalled = time.monotonic()
    os.kill(worker.popen.pid, signal.SIGTERM)
    assert worker.popen.wait(GRACE + 10) == 0, worker.tail()
    assert time.monotonic() - signalled < GRACE + 5
    for job_id in short:
        assert view(stack, job_id)["status"] == "finished", worker.tail()
    for job_id in long:
        back = view(stack, job_id)
        assert back["status"] == "queued", f"{back}\n{worker.tail()}"
        assert (back["retries_left"], back["attempts"]) == (2, 0)
        for trace in ("started_at", "ended_at", "worker", "progress", "error"):
            assert back[trace] is None, back
    assert "job requeued" in worker.tail()
