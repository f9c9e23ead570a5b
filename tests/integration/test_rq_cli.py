"""RQ's own CLI, pointed at the same Redis, sees offload's queues and workers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.dev.harness import Stack, child_env

pytestmark = pytest.mark.integration

RQ = str(Path(sys.executable).parent / "rq")


def rq_info(stack: Stack, *args: str) -> str:
    completed = subprocess.run(
        [RQ, "info", "--url", stack.redis_url, "--serializer", "json", "--raw", *args],
        capture_output=True, text=True, timeout=30, check=False, env=child_env(),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_rq_info_shows_the_same_queues_and_workers(stack: Stack) -> None:
    for queue in ("high", "default", "low"):  # RQ lists a queue once a job was put on it
        response = stack.client.post(
            "/jobs/word_count", json={"text": "a"}, params={"queue": queue, "delay": 600}
        )
        assert response.status_code == 202
    shown = rq_info(stack, "--only-queues")
    listed = {line.split()[1].rstrip(",") for line in shown.splitlines() if line.startswith("queue ")}
    assert {"high", "default", "low"} <= listed, shown
    workers = stack.client.get("/workers").json()
    shown = rq_info(stack, "--only-workers")
    for worker in workers:
        line = next(line for line in shown.splitlines() if worker["name"] in line)
        assert ", ".join(worker["queues"]) in line, shown
