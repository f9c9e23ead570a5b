"""The local runner gives the dashboard credentials when none are set, and prints them."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.dev.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    LoggedProcess,
    descendants,
    kill_all,
    new_client,
    procfile_commands,
    running_redis,
    start_logged,
    wait_for_health,
)
from service.dev.redis_server import free_port

pytestmark = pytest.mark.integration

PRINTED = re.compile(r"offload: dashboard at (\S+)\s+\(user (\S+), password (\S+), generated for this run\)")


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[tuple[LoggedProcess, str]]:
    """`python -m service.dev` with only the Procfile's web and no dashboard credentials set;
    stopped with Ctrl-C, and anything left of it killed."""
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"web: {procfile_commands()['web']}\n")
    port = free_port()
    with running_redis(tmp_path / "redis") as server:
        env = dict(os.environ, HOST=LOOPBACK, PORT=str(port), PYTHONUNBUFFERED="1", REDIS_URL=server.url)
        for name in ("DASHBOARD_USERNAME", "DASHBOARD_PASSWORD"):
            env.pop(name, None)
        command = [sys.executable, "-m", "service.dev", "-f", str(procfile)]
        process = start_logged("runner", command, tmp_path / "runner.log", env)
        try:
            yield process, f"http://{LOOPBACK}:{port}"
        finally:
            started = descendants(process.popen.pid)  # honcho gives each a session of its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.popen.pid, signal.SIGINT)
            try:
                process.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.stop()
            kill_all(started)


def test_the_runner_generates_and_prints_dashboard_credentials(
    runner: tuple[LoggedProcess, str],
) -> None:
    process, base_url = runner
    with new_client(base_url) as client:
        wait_for_health(client, [process], STARTUP_TIMEOUT)
        printed = PRINTED.search(process.log_path.read_text())
        assert printed is not None, process.tail()
        url, user, password = printed.groups()
        assert url == f"{base_url}/dashboard/"
        assert len(password) >= 24
        assert client.get("/dashboard/").status_code == 401
        assert client.get("/dashboard/", auth=(user, password)).status_code == 200
        assert client.get("/dashboard/", auth=(user, password + "x")).status_code == 401
