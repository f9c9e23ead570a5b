"""Redis goes away under a running web and worker, then comes back on the same port and data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from service.dev.harness import (
    HTTP_TIMEOUT,
    RecordProperty,
    Stack,
    StartRedis,
    StartStack,
    wait_for_blocked_client,
    wait_until,
)
from service.dev.redis_server import RedisServer

pytestmark = pytest.mark.integration

# Long enough for the worker to fail several times and back off (1 s, then 2 s, ...).
OUTAGE_SECONDS = 2.0
READY_TIMEOUT = 15.0
# RQ's worker backs off 1, 2, 4, ... s (at most 60) between attempts while Redis is down.
RECOVERY_TIMEOUT = 60.0


def post(stack: Stack, name: str, body: dict[str, Any], **options: Any) -> dict[str, Any]:
    response = stack.client.post(f"/jobs/{name}", json=body, params=options)
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{stack.logs()}"
    job: dict[str, Any] = response.json()
    return job


def assert_unavailable(stack: Stack, method: str, url: str, body: dict[str, Any] | None = None) -> float:
    """The request answers 503 with a JSON detail about Redis, within the client's timeout."""
    started = time.monotonic()
    response = stack.client.request(method, url, json=body)
    elapsed = time.monotonic() - started
    context = f"{method} {url}: {response.status_code} {response.text}\n{stack.logs()}"
    assert response.status_code == 503, context
    assert response.headers["content-type"] == "application/json", context
    assert "Redis" in response.json()["detail"], context
    assert "Traceback" not in response.text, context
    assert elapsed < HTTP_TIMEOUT
    return elapsed


def test_web_and_worker_ride_out_a_redis_restart(
    start_redis: StartRedis,
    start_stack: StartStack,
    tmp_path: Path,
    record_property: RecordProperty,
) -> None:
    data_dir = tmp_path / "redis"
    first: RedisServer = start_redis(data_dir)
    stack = start_stack(first.url)

    finished_before = post(stack, "word_count", {"text": "kept across the restart"})
    failed_before = post(stack, "always_fails", {"message": "failed before the outage"}, retries=0)
    for accepted in (finished_before, failed_before):
        assert stack.wait_for_job(accepted["id"], 10)["status"] in ("finished", "failed"), stack.logs()

    # Stop Redis while the worker waits for work (blocked in BLPOP), the one place RQ's work
    # loop rides out a lost connection; see the expected failure below for the other places.
    assert wait_for_blocked_client(first.url, 10), f"the worker never waited for work\n{stack.logs()}"
    first.stop()
    outage_started = time.monotonic()
    slowest = max(
        assert_unavailable(stack, "GET", "/readyz"),
        assert_unavailable(stack, "POST", "/jobs/word_count", {"text": "a b"}),
        assert_unavailable(stack, "GET", f"/jobs/{finished_before['id']}"),
    )
    print(f"while Redis was down, the slowest 503 took {slowest * 1000:.0f} ms")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))

    second = start_redis(data_dir, port=first.port)
    restarted = time.monotonic()
    print(f"Redis was down for {restarted - outage_started:.2f} s")

    def ready() -> bool:
        return stack.client.get("/readyz").status_code == 200

    assert wait_until(ready, READY_TIMEOUT), f"/readyz not 200 after the restart\n{stack.logs()}"
    ready_seconds = time.monotonic() - restarted
    record_property("readyz_recovery_seconds", round(ready_seconds, 3))
    print(f"/readyz answered 200 {ready_seconds:.2f} s after the restart")

    # What was accepted before the outage survived it: the append-only file was flushed on SIGTERM.
    kept = stack.wait_for_job(finished_before["id"], 0)
    assert kept["status"] == "finished", f"{kept}\n{stack.logs()}"
    assert kept["result"]["words"] == 4
    kept_failure = stack.wait_for_job(failed_before["id"], 0)
    assert kept_failure["status"] == "failed", f"{kept_failure}\n{stack.logs()}"
    assert kept_failure["error"]["message"] == "failed before the outage"

    # The worker reconnects by itself: a new job runs without restarting any process.
    accepted = post(stack, "word_count", {"text": "a b"})
    job = stack.wait_for_job(accepted["id"], RECOVERY_TIMEOUT)
    worker_seconds = time.monotonic() - restarted
    record_property("worker_recovery_seconds", round(worker_seconds, 3))
    print(f"a job enqueued after the restart finished {worker_seconds:.2f} s after the restart")
    assert job["status"] == "finished", f"{job}\n{stack.logs()}"
    assert job["result"]["words"] == 2
    assert second.process is not None
    assert second.process.poll() is None
    assert all(process.popen.poll() is None for process in stack.processes.values()), stack.logs()


def test_worker_survives_an_outage_during_a_job(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path
) -> None:
    data_dir = tmp_path / "redis"
    first = start_redis(data_dir)
    stack = start_stack(first.url)
    worker = stack.processes["worker"]
    running = post(stack, "very_long_task", {"seconds": 1})

    def started() -> bool:
        status: str = stack.client.get(f"/jobs/{running['id']}").json()["status"]
        return status == "started"

    assert wait_until(started, 10), stack.logs()
    first.stop()
    time.sleep(OUTAGE_SECONDS)  # the job ends while Redis is down
    start_redis(data_dir, port=first.port)

    assert worker.popen.poll() is None, f"the worker exited during the outage\n{worker.tail()}"
    ended = stack.wait_for_job(running["id"], 20)
    assert ended["status"] == "finished", f"{ended}\n{stack.logs()}"
    accepted = post(stack, "word_count", {"text": "a b"})
    job = stack.wait_for_job(accepted["id"], 20)
    assert job["status"] == "finished", f"{job}\n{stack.logs()}"
    # The scheduler (retry intervals, delayed jobs) came through the outage too.
    retried = post(stack, "always_fails", {}, retries=1)
    failed = stack.wait_for_job(retried["id"], 20)
    assert (failed["status"], failed["retries_left"]) == ("failed", 0), f"{failed}\n{stack.logs()}"


def test_every_job_accepted_before_a_restart_under_load_runs(
    start_redis: StartRedis, start_stack: StartStack, tmp_path: Path, record_property: RecordProperty
) -> None:
    """Redis restarted (gracefully) with a job running and hundreds queued: nothing is lost, and the
    web and the worker are back within 5 s of Redis, without a restart of their own."""
    data_dir = tmp_path / "redis"
    first = start_redis(data_dir)
    stack = start_stack(first.url)
    running = post(stack, "very_long_task", {"seconds": 2})
    response = stack.client.post("/jobs/word_count/batch", json=[{"text": f"job {n}"} for n in range(300)])
    assert response.status_code == 202, response.text
    accepted = [running["id"]] + [job["id"] for job in response.json()]
    assert wait_until(lambda: stack.client.get(f"/jobs/{running['id']}").json()["status"] == "started", 10)

    first.stop()  # SIGTERM: Redis writes its append-only file and exits
    time.sleep(1)
    start_redis(data_dir, port=first.port)
    restarted = time.monotonic()
    assert wait_until(lambda: stack.client.get("/readyz").status_code == 200, 5), stack.logs()
    web_seconds = time.monotonic() - restarted

    def finished_since_restart() -> bool:
        queues = {queue["name"]: queue["counts"] for queue in stack.client.get("/queues").json()}
        return bool(queues["default"]["finished"] > 0)

    assert wait_until(finished_since_restart, 5, interval=0.05), stack.logs()
    worker_seconds = time.monotonic() - restarted
    record_property("web_recovery_seconds", round(web_seconds, 2))
    record_property("worker_recovery_seconds", round(worker_seconds, 2))
    print(f"after the restart: web ready in {web_seconds:.2f} s, worker finishing in {worker_seconds:.2f} s")

    ended = [stack.wait_for_job(job_id, 60) for job_id in accepted]
    assert [job["status"] for job in ended].count("finished") == len(accepted), stack.logs()
