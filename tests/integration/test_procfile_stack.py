"""Jobs end to end through the Procfile's real web and worker processes on a real Redis."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from service.dev.harness import RecordProperty, Stack, wait_until

pytestmark = pytest.mark.integration


def enqueue(stack: Stack, name: str, body: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """POST /jobs/{name}; assert the 202 and its Location; the job as answered."""
    response = stack.client.post(f"/jobs/{name}", json=body, params=options)
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{stack.logs()}"
    job: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    return job


def test_slow_task_end_to_end(stack: Stack, record_property: RecordProperty) -> None:
    started = time.perf_counter()
    response = stack.client.post("/jobs/very_long_task", json={"seconds": 1})
    post_seconds = time.perf_counter() - started
    record_property("post_seconds", round(post_seconds, 4))
    print(f"POST /jobs/very_long_task answered in {post_seconds * 1000:.1f} ms")

    assert response.status_code == 202, f"{response.status_code} {response.text}\n{stack.logs()}"
    accepted = response.json()
    assert response.headers["location"] == f"/jobs/{accepted['id']}"
    assert accepted["status"] == "queued"
    assert accepted["name"] == "very_long_task"
    assert accepted["input"] == {"seconds": 1}

    job = stack.wait_for_job(accepted["id"], 10)
    assert job["status"] == "finished", f"{job}\n{stack.logs()}"
    assert job["result"]["slept"] >= 1
    assert job["error"] is None
    assert job["started_at"] is not None
    assert job["ended_at"] is not None
    assert datetime.fromisoformat(job["ended_at"]) >= datetime.fromisoformat(job["started_at"])
    assert job["worker"]


def test_failing_job_reports_its_error(stack: Stack) -> None:
    message = "broken on purpose in an integration test"
    accepted = enqueue(stack, "always_fails", {"message": message}, retries=0)

    job = stack.wait_for_job(accepted["id"], 10)

    assert job["status"] == "failed", f"{job}\n{stack.logs()}"
    assert job["error"] == {"type": "IntentionalFailureError", "message": message}
    assert job["result"] is None


def test_progress_is_visible_while_running(stack: Stack) -> None:
    accepted = enqueue(stack, "process_items", {"items": 4, "delay": 0.5})

    def midway() -> dict[str, Any] | None:
        job: dict[str, Any] = stack.client.get(f"/jobs/{accepted['id']}").json()
        progress = job["progress"]
        if job["status"] == "started" and progress is not None and 0 < progress["fraction"] < 1:
            return job
        assert job["status"] in ("queued", "started"), f"{job}\n{stack.logs()}"
        return None

    seen = wait_until(midway, timeout=10, interval=0.05)
    assert seen is not None, f"never saw the job started and part done\n{stack.logs()}"
    assert seen["progress"]["message"].endswith("/4 items")

    job = stack.wait_for_job(accepted["id"], 10)
    assert job["status"] == "finished", f"{job}\n{stack.logs()}"
    assert job["progress"] == {"fraction": 1.0, "message": "4/4 items"}
    assert job["result"] == {"processed": 4}


def test_retries_run_through_the_scheduler(stack: Stack) -> None:
    # always_fails retries twice, 1 s then 2 s apart: the worker's scheduler must requeue it.
    accepted = enqueue(stack, "always_fails")
    assert accepted["retries_left"] == 2

    job = stack.wait_for_job(accepted["id"], 30)

    assert job["status"] == "failed", f"{job}\n{stack.logs()}"
    assert job["retries_left"] == 0
    assert job["error"] == {"type": "IntentionalFailureError", "message": "this job fails on purpose"}
