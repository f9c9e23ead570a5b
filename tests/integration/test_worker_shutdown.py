"""The Procfile's worker stopped the way Heroku and honcho stop it: signals to its process group."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Stack, StartRedis, StartStack, descendants, is_alive, wait_until

pytestmark = pytest.mark.integration


def start_long_job(stack: Stack, seconds: float) -> dict[str, Any]:
    response = stack.client.post("/jobs/very_long_task", json={"seconds": seconds})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()

    def started() -> bool:
        return bool(stack.client.get(f"/jobs/{job['id']}").json()["status"] == "started")

    assert wait_until(started, 10), stack.logs()
    return job


def test_sigterm_lets_the_running_job_finish(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url)
    worker = stack.processes["worker"]
    job = start_long_job(stack, 2)
    # A dyno restart signals every process of the dyno, the work horse (own process group) too.
    for pid in {worker.popen.pid} | descendants(worker.popen.pid):
        os.kill(pid, signal.SIGTERM)
    assert worker.popen.wait(20) == 0, worker.tail()
    assert "warm shut down requested" in worker.tail()
    ended = stack.client.get(f"/jobs/{job['id']}").json()
    assert ended["status"] == "finished", f"{ended}\n{worker.tail()}"
    assert ended["result"]["slept"] >= 2


def test_a_killed_worker_takes_its_work_horse_down(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    stack = start_stack(start_redis(tmp_path / "redis").url)
    worker = stack.processes["worker"]
    start_long_job(stack, 60)
    below = descendants(worker.popen.pid)
    assert below, "the worker has no child processes: no work horse?"
    os.killpg(worker.popen.pid, signal.SIGKILL)  # what honcho does when its grace period ends
    worker.popen.wait(10)
    # The horse sits in a process group of its own; only the kernel's parent-death signal stops it.
    assert wait_until(lambda: not any(is_alive(pid) for pid in below), 10), below
