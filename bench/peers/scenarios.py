"""The four measurements, each one run of one system; every process is stopped when it ends.

The jobs mark Redis themselves (apps/bench_common.py): `tick` and `io_wait` push their end time,
`stamp` its start time, all with the machine's one clock. A drain's figure runs from the first
mark to the last: the first job is a `tick` enqueued ahead of the others, so the worker's own
start-up (interpreter, imports, connecting) is left out for every system alike.
"""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.load import run_wrk
from bench.peers.system import System, WorkerSetting
from bench.processes import web_command
from bench.report import median
from service.dev.harness import (
    LOOPBACK,
    STARTUP_TIMEOUT,
    LoggedProcess,
    new_client,
    start_logged,
    wait_for_health,
    wait_until,
)
from service.dev.redis_server import free_port

DONE = "bench:done"  # apps/bench_common.py's keys
STARTED = "bench:started"
# A worker's start-up (Celery's takes seconds on a busy machine) is inside every timeout below.
WORKER_START = 60.0
HTTP_CONNECTIONS = 64  # as bench/enqueue_load.py's P1


@dataclass(frozen=True)
class Run:
    """What every measurement is given: the run's one redis-server and where logs go."""

    redis_url: str
    connection: redis.Redis
    logs: Path

    def log(self, system: System, what: str) -> Path:
        return self.logs / f"{system.name}-{what}.log"


@contextlib.contextmanager
def running_worker(run: Run, system: System, setting: WorkerSetting) -> Iterator[LoggedProcess]:
    command, env = system.worker_command(setting)
    process = start_logged(
        f"{system.name}-worker", command, run.log(system, "worker"), {**env, "REDIS_URL": run.redis_url}
    )
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def running_app(run: Run, system: System) -> Iterator[str]:
    """The system's FastAPI app under the Procfile's web command on a free loopback port: its URL."""
    app, env = system.web()
    port = free_port()
    env = {**env, "HOST": LOOPBACK, "PORT": str(port), "REDIS_URL": run.redis_url}
    process = start_logged(f"{system.name}-web", web_command(app), run.log(system, "web"), env)
    url = f"http://{LOOPBACK}:{port}"
    try:
        with new_client(url) as client:
            wait_for_health(client, [process], STARTUP_TIMEOUT)
        yield url
    finally:
        process.stop()


def drain_seconds(
    run: Run, system: System, setting: WorkerSetting, job: str, count: int, seconds: float, timeout: float
) -> float:
    """Seconds from the start mark to the last of `count` jobs, queued before the worker starts."""
    run.connection.flushall()
    system.enqueue(run.redis_url, job, count, seconds, run.log(system, "enqueue"))
    with running_worker(run, system, setting) as worker:

        def drained() -> bool:
            if worker.popen.poll() is not None:
                raise RuntimeError(f"{setting.label} exited ({worker.popen.returncode})\n{worker.tail(20)}")
            return run.connection.llen(DONE) >= count + 1

        if not wait_until(drained, WORKER_START + timeout, interval=0.05):
            done = run.connection.llen(DONE)
            raise TimeoutError(f"{setting.label}: {done} of {count + 1} jobs in {WORKER_START + timeout:g} s")
    marks = sorted(float(mark) for mark in run.connection.lrange(DONE, 0, -1))
    return marks[-1] - marks[0]


def pickup_ms(run: Run, system: System, setting: WorkerSetting, calls: int, warmup: int = 5) -> float:
    """p50 of ms from the client's send of `POST /jobs/stamp` to the job's start, idle worker.

    Sequential calls from the standard library's thin client (as bench/pickup.py's), each waiting
    for the job's start mark before the next; the first `warmup` also wait out the worker's start.
    """
    run.connection.flushall()
    taken: list[float] = []
    with running_app(run, system) as url, running_worker(run, system, setting) as worker:
        post = http.client.HTTPConnection(LOOPBACK, int(url.rsplit(":", 1)[1]), timeout=20)
        try:
            for n in range(warmup + calls):
                run.connection.delete(STARTED)
                sent = time.time()
                post.request("POST", "/jobs/stamp", "{}", {"Content-Type": "application/json"})
                response = post.getresponse()
                body = response.read()
                if response.status != 202:
                    raise RuntimeError(f"POST /jobs/stamp answered {response.status}: {body[:200]!r}")
                wait = WORKER_START if n < warmup else 10.0
                mark = run.connection.blpop([STARTED], timeout=wait)
                if mark is None:
                    raise TimeoutError(f"{setting.label}: no job start within {wait:g} s\n{worker.tail(20)}")
                if n >= warmup:
                    taken.append((float(mark[1]) - sent) * 1000)
        finally:
            post.close()
    return median(taken)


def enqueue_per_second(run: Run, system: System, seconds: float) -> float:
    """Requests a second of `POST /jobs/tick` at wrk c64, no worker (jobs pile up, flushed first)."""
    with running_app(run, system) as url:
        target = f"{url}/jobs/tick"
        run_wrk(target, connections=HTTP_CONNECTIONS, seconds=1, method="POST", body="{}")  # warm up
        run.connection.flushall()
        load = run_wrk(target, connections=HTTP_CONNECTIONS, seconds=seconds, method="POST", body="{}")
    run.connection.flushall()
    return load.per_second
