"""The web killed mid-request: a client that retries with the same Idempotency-Key gets one job."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from service.dev.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT,
    LoggedProcess,
    StartRedis,
    child_env,
    new_client,
    procfile_commands,
    start_logged,
    wait_for_health,
)
from service.dev.redis_server import free_port

pytestmark = pytest.mark.integration

# When the kill lands: before the request reaches the app, while it writes, after it answered.
KILL_DELAYS = (0.0, 0.005, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3)


def test_a_retried_post_after_a_dropped_connection_makes_exactly_one_job(
    start_redis: StartRedis, tmp_path: Path
) -> None:
    redis_url = start_redis(tmp_path / "redis").url
    port = free_port()
    env = child_env(REDIS_URL=redis_url, HOST=LOOPBACK, PORT=str(port))
    base_url = f"http://{LOOPBACK}:{port}"
    web: LoggedProcess | None = None
    outcomes: list[str] = []
    try:
        with new_client(base_url) as client:
            for attempt, delay in enumerate(KILL_DELAYS):
                web = start_logged(
                    f"web{attempt}", procfile_commands()["web"], tmp_path / f"web{attempt}.log", env
                )
                wait_for_health(client, [web], STARTUP_TIMEOUT)
                key = f"dropped-{attempt}-{time.time_ns()}"
                first: dict[str, Any] = {}

                def send(key: str = key, first: dict[str, Any] = first) -> None:
                    try:
                        response = client.post(
                            "/jobs/word_count", json={"text": key}, headers={"Idempotency-Key": key}
                        )
                        first["status"] = response.status_code
                    except httpx2.TransportError as exc:
                        first["error"] = type(exc).__name__

                sender = threading.Thread(target=send)
                sender.start()
                time.sleep(delay)
                os.killpg(web.popen.pid, signal.SIGKILL)  # no graceful shutdown: the connection drops
                web.popen.wait(10)
                sender.join(15)
                outcomes.append(str(first.get("status", first.get("error"))))

                web = start_logged(
                    f"web{attempt}b", procfile_commands()["web"], tmp_path / f"web{attempt}b.log", env
                )
                wait_for_health(client, [web], STARTUP_TIMEOUT)
                before = client.get("/jobs", params={"name": "word_count", "limit": 200}).json()["jobs"]
                outcomes[-1] += (
                    " (written)" if any(job["input"]["text"] == key for job in before) else " (lost)"
                )
                retried = client.post(
                    "/jobs/word_count", json={"text": key}, headers={"Idempotency-Key": key}
                )
                assert retried.status_code == 202, retried.text
                listed = client.get("/jobs", params={"name": "word_count", "limit": 200}).json()["jobs"]
                assert [job["id"] for job in listed if job["input"]["text"] == key] == [retried.json()["id"]]
                web.stop()
                web = None
    finally:
        if web is not None:
            web.stop()
    print(f"first attempts, by kill delay {KILL_DELAYS}: {outcomes}")
