"""The local runner (`python -m service.dev`): embedded Redis, the Procfile, and a clean Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.dev.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT,
    LoggedProcess,
    RecordProperty,
    descendants,
    is_alive,
    kill_all,
    new_client,
    start_logged,
    wait_for_health,
)
from service.dev.redis_server import free_port

pytestmark = pytest.mark.integration

PRINTED_KEY = re.compile(r"offload: API key (\S+) \(admin, generated for this run\)")

# The runner gives workers Heroku's 30 s to finish; an idle stack stops far sooner.
SHUTDOWN_TIMEOUT = 40.0


@dataclass
class Runner:
    """The runner process, and every process seen below it (kept: orphans lose their parent link)."""

    process: LoggedProcess
    base_url: str
    seen: set[int] = field(default_factory=set)

    def look(self) -> set[int]:
        self.seen |= descendants(self.process.popen.pid)
        return self.seen


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return "(gone)"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    """`python -m service.dev` with no REDIS_URL, in its own session; killed with all below it."""
    port = free_port()
    # A data folder of its own: the repository's .data may hold a developer's backlog of jobs.
    env = dict(
        os.environ, HOST=LOOPBACK, PORT=str(port), PYTHONUNBUFFERED="1", OFFLOAD_DATA_DIR=str(tmp_path)
    )
    env.pop("REDIS_URL", None)
    command = [sys.executable, "-m", "service.dev"]
    process = start_logged("runner", command, tmp_path / "runner.log", env)
    started = Runner(process, f"http://{LOOPBACK}:{port}")
    try:
        yield started
    finally:
        popen = started.process.popen
        if popen.poll() is None:
            started.look()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
        # The Procfile's processes and the embedded Redis each run in a session of their own.
        kill_all(started.seen)
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def test_runner_serves_jobs_and_stops_everything_on_ctrl_c(
    runner: Runner, record_property: RecordProperty
) -> None:
    log = runner.process
    with new_client(runner.base_url) as client:
        wait_for_health(client, [log], STARTUP_TIMEOUT)
        assert client.post("/jobs/word_count", json={"text": "x"}).status_code == 401  # keys are on
        printed = PRINTED_KEY.search(log.log_path.read_text())
        assert printed is not None, log.tail()
        client.headers["Authorization"] = f"Bearer {printed.group(1)}"
        response = client.post("/jobs/word_count", json={"text": "one two two"})
        assert response.status_code == 202, f"{response.status_code} {response.text}\n{log.tail()}"
        job_id = response.json()["id"]
        job = client.get(f"/jobs/{job_id}", params={"wait": 15}, timeout=25).json()
    assert job["status"] == "finished", f"{job}\n{log.tail()}"
    assert job["result"]["words"] == 3

    children = runner.look()
    commands = {pid: command_line(pid) for pid in children}
    everything = "\n".join(f"{pid}: {line}" for pid, line in sorted(commands.items()))
    for expected in ("redis-server", "uvicorn", "service.worker", "service.clock"):
        assert any(expected in line for line in commands.values()), f"no {expected} in\n{everything}"

    started = time.monotonic()
    os.kill(log.popen.pid, signal.SIGINT)  # Ctrl-C, to the runner alone
    try:
        returncode = log.popen.wait(SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the runner still runs {SHUTDOWN_TIMEOUT} s after SIGINT\n{log.tail()}")
    shutdown_seconds = time.monotonic() - started
    record_property("runner_shutdown_seconds", round(shutdown_seconds, 3))
    print(f"the runner exited {shutdown_seconds:.2f} s after SIGINT, with {returncode}")

    alive = {pid: commands[pid] for pid in children if is_alive(pid)}
    assert not alive, f"still running after the runner exited: {alive}\n{log.tail()}"
    text = log.log_path.read_text()
    assert "offload: embedded Redis at redis://127.0.0.1:" in text, log.tail()
    assert "offload: embedded Redis stopped" in text, log.tail()
    assert returncode in (0, 130), f"exit status {returncode}\n{log.tail()}"
