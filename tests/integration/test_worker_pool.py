"""The Procfile's worker as a recycled process pool (WORKER_PROCESSES): real Redis, real processes."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from service.dev.harness import (
    ProcStat,
    Stack,
    StartRedis,
    StartStack,
    is_alive,
    proc_stat,
    session_members,
    wait_until,
)
from service.store.layout import worker_key

pytestmark = pytest.mark.integration

CHILDREN = 2


def post(stack: Stack, name: str, body: dict[str, Any], **params: Any) -> str:
    response = stack.client.post(f"/jobs/{name}", json=body, params=params)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def view(stack: Stack, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = stack.client.get(f"/jobs/{job_id}").json()
    return job


def pool_stack(start_redis: StartRedis, start_stack: StartStack, tmp_path: Path, **env: str) -> Stack:
    return start_stack(start_redis(tmp_path / "redis").url, env={"WORKER_PROCESSES": str(CHILDREN), **env})


def child_pid(stack: Stack, worker_name: str) -> int:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        return int(client.hget(worker_key(worker_name), "pid") or 0)
    finally:
        client.close()


def proc_stat_of(pid: int) -> ProcStat:
    stat = proc_stat(pid)
    assert stat is not None, f"process {pid} is gone"
    return stat


def wait_started(stack: Stack, job_ids: list[str], timeout: float = 15) -> list[dict[str, Any]]:
    def started() -> list[dict[str, Any]] | None:
        jobs = [view(stack, job_id) for job_id in job_ids]
        return jobs if all(job["status"] == "started" for job in jobs) else None

    jobs = wait_until(started, timeout)
    assert jobs is not None, stack.logs()
    return jobs


def test_children_run_many_jobs_each_and_are_recycled_after_their_limit(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = pool_stack(start_redis, start_stack, tmp_path, WORKER_MAX_JOBS_PER_CHILD="4")
    job_ids = [post(stack, "word_count", {"text": f"job {n}"}) for n in range(24)]
    ran = [stack.wait_for_job(job_id, 30) for job_id in job_ids]
    assert [job["status"] for job in ran] == ["finished"] * len(ran), stack.logs()
    per_child = collections.Counter(job["worker"] for job in ran)
    assert max(per_child.values()) <= 4  # then the child stopped and the pool started a fresh one
    assert len(per_child) >= len(ran) // 4
    assert sum(count > 1 for count in per_child.values()) >= 2  # many jobs per process: no fork per job
    # A recycled child's record is gone: GET /workers shows the live children only.
    assert wait_until(lambda: len(stack.client.get("/workers").json()) == CHILDREN, 10), stack.logs()


def test_a_killed_child_has_its_job_run_again_at_once(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = pool_stack(start_redis, start_stack, tmp_path)
    job_id = post(stack, "very_long_task", {"seconds": 4}, retries=1)
    (job,) = wait_started(stack, [job_id])
    pid = child_pid(stack, job["worker"])
    assert pid
    assert pid != stack.processes["worker"].popen.pid  # a child's, not the pool's
    assert proc_stat_of(pid).nice == os.getpriority(os.PRIO_PROCESS, 0)  # simple children: the web's priority
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def recovered() -> dict[str, Any] | None:
        again = view(stack, job_id)
        return again if again["retries_left"] == 0 else None

    # Its run would lapse only at the job's timeout (an hour) plus a minute; the pool lapses it now
    # and sweeps: the job is retried, one retry spent, after its backoff interval.
    assert wait_until(recovered, 5, interval=0.1), f"{view(stack, job_id)}\n{stack.logs()}"
    recovered_after = time.monotonic() - killed_at

    def rerun() -> dict[str, Any] | None:
        again = view(stack, job_id)
        return again if again["status"] == "started" and again["worker"] != job["worker"] else None

    again = wait_until(rerun, 20, interval=0.2)
    assert again is not None, f"{view(stack, job_id)}\n{stack.logs()}"
    print(f"killed child's job: retried after {recovered_after:.1f} s, running again after "
          f"{time.monotonic() - killed_at:.1f} s")  # fmt: skip
    assert again["retries_left"] == 0
    assert stack.wait_for_job(job_id, 30)["status"] == "finished"
    assert not is_alive(pid)
    assert stack.processes["worker"].popen.poll() is None  # the pool lives on, a child short no longer


def test_sigterm_to_the_pool_lets_running_jobs_finish_and_loses_none(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = pool_stack(start_redis, start_stack, tmp_path)
    running = [post(stack, "very_long_task", {"seconds": 3}) for _ in range(CHILDREN)]
    waiting = [post(stack, "word_count", {"text": "after the restart"}) for _ in range(3)]
    wait_started(stack, running)
    pool = stack.processes["worker"]
    session = pool.popen.pid
    signalled_at = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session, signal.SIGTERM)  # as honcho and Heroku do: the pool and its children

    def ended() -> bool:
        pool.popen.poll()
        return not any(is_alive(pid) for pid in session_members(session))

    assert wait_until(ended, 20), pool.tail()
    stopped_after = time.monotonic() - signalled_at
    print(f"pool stopped {stopped_after:.1f} s after SIGTERM")
    assert [view(stack, job_id)["status"] for job_id in running] == ["finished"] * CHILDREN, pool.tail()
    assert [view(stack, job_id)["status"] for job_id in waiting] == ["queued"] * len(waiting)


def test_concurrent_children_run_their_slots_at_once_and_a_killed_ones_jobs_run_again(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    # WORKER_CONCURRENCY set: each child is a concurrent worker, three jobs at once.
    stack = pool_stack(start_redis, start_stack, tmp_path, WORKER_CONCURRENCY="3")
    job_ids = [post(stack, "very_long_task", {"seconds": 4}, retries=1) for _ in range(2 * 3)]
    jobs = wait_started(stack, job_ids)  # six at once: two processes, three slots each
    per_child = collections.Counter(job["worker"] for job in jobs)
    assert sorted(per_child.values()) == [3, 3], per_child
    doomed = next(iter(per_child))
    pid = child_pid(stack, doomed)
    assert pid
    # WORKER_NICE's default, from the pool: concurrent children yield to the web.
    assert proc_stat_of(pid).nice == 19
    os.kill(pid, signal.SIGKILL)
    ended = [stack.wait_for_job(job_id, 40) for job_id in job_ids]
    assert [job["status"] for job in ended] == ["finished"] * len(ended), stack.logs()
    rerun = [job for job in ended if job["retries_left"] == 0]
    assert len(rerun) == 3  # the killed child's three, each run again once
    assert all(job["worker"] != doomed for job in rerun)
    assert stack.processes["worker"].popen.poll() is None
