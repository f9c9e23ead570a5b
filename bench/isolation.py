"""P3b: do CPU-heavy jobs slow the other routes down? p99 while two jobs run, against idle.

offload: the Procfile's web and two of its workers on one Redis; the workers run `count_primes`
jobs enqueued through the API. Baseline: a plain FastAPI app (bench/background_app.py, same
uvicorn command) that runs the same function in two `BackgroundTasks`. Each measures
`GET /healthz` and `GET /jobs/{id}` (a finished job) idle and busy, alternately over rounds;
the figure is the median p99 busy over the median p99 idle. The workers run on the same cores as
the web here (one machine): part of what they cost the web is CPU, not the design. A `ref` row
measures that part: the same web, its workers idle, while two plain processes count primes.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import redis
from rq.registry import StartedJobRegistry

from bench.load import run_wrk
from bench.processes import Context, running_web, running_workers
from bench.report import Better, Row, median
from jobs.examples import count_primes
from service.dev.harness import LoggedProcess, child_env, running_redis, start_logged, wait_until

CONNECTIONS = 8
WORKERS = 2
LIMIT = 20_000_000  # count_primes' input: about 0.15 s of CPU a job on the project's machine
SETTLE_TIMEOUT = 60.0


@dataclass
class System:
    """A web app under test and how to make its two jobs run, and stop."""

    url: str
    job_path: str
    start: Callable[[int], None]  # jobs to keep each of the two runners busy
    running: Callable[[], int]
    has_work_left: Callable[[], bool]  # the busy runners would go on: nothing ran dry mid-measure
    stop: Callable[[], None]


def settle(system: System, want: int, what: str) -> None:
    if not wait_until(lambda: system.running() == want, SETTLE_TIMEOUT, interval=0.05):
        raise RuntimeError(f"{what}: {system.running()} jobs running, not {want}, after {SETTLE_TIMEOUT} s")


def measure(system: System, rounds: int, seconds: int, jobs_each: int) -> dict[str, tuple[float, float]]:
    """Median p99 (idle, busy) of each route."""
    routes = {"GET /healthz": "/healthz", "GET /jobs/{id}": system.job_path}
    idle: dict[str, list[float]] = {route: [] for route in routes}
    busy: dict[str, list[float]] = {route: [] for route in routes}
    for path in routes.values():  # warm up
        run_wrk(f"{system.url}{path}", connections=CONNECTIONS, seconds=1)
    for _ in range(rounds):
        settle(system, 0, "idle")
        for route, path in routes.items():
            idle[route].append(
                run_wrk(f"{system.url}{path}", connections=CONNECTIONS, seconds=seconds).p99_ms
            )
        system.start(jobs_each)
        settle(system, WORKERS, "busy")
        for route, path in routes.items():
            busy[route].append(
                run_wrk(f"{system.url}{path}", connections=CONNECTIONS, seconds=seconds).p99_ms
            )
        if not system.has_work_left():
            raise RuntimeError("the jobs ran out before the busy measurement ended: give each more work")
        system.stop()
    return {route: (median(idle[route]), median(busy[route])) for route in routes}


def offload_system(web_url: str, client: httpx2.Client, connection: redis.Redis) -> System:
    started = StartedJobRegistry("low", connection=connection)
    answer = client.post("/jobs/word_count", json={"text": "a finished job"}, params={"wait": 10})
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "finished", answer.text

    def start(jobs_each: int) -> None:
        response = client.post("/jobs/count_primes/batch", json=[{"limit": LIMIT}] * (WORKERS * jobs_each))
        assert response.status_code == 202, response.text

    def stop() -> None:
        connection.delete("rq:queue:low")  # the jobs not started yet; the running ones end soon

    def running() -> int:
        return started.get_job_count(cleanup=False)

    def has_work_left() -> bool:
        return bool(connection.llen("rq:queue:low"))

    return System(web_url, f"/jobs/{answer.json()['id']}", start, running, has_work_left, stop)


def background_system(web_url: str, client: httpx2.Client) -> System:
    answer = client.post("/jobs/count_primes", params={"limit": 10})
    assert answer.status_code == 202, answer.text
    job_path = f"/jobs/{answer.json()['id']}"
    assert wait_until(lambda: client.get(job_path).json()["status"] == "finished", 10)

    def start(jobs_each: int) -> None:
        for _ in range(WORKERS):
            response = client.post("/jobs/count_primes", params={"limit": LIMIT, "repeat": jobs_each})
            assert response.status_code == 202, response.text

    def running() -> int:
        count: int = client.get("/busy").json()["running"]
        return count

    def stop() -> None:
        client.post("/stop").raise_for_status()

    return System(web_url, job_path, start, running, lambda: running() == WORKERS, stop)


BURNER = f"from jobs.examples import count_primes\nwhile True: count_primes({LIMIT})"


def burner_system(web_url: str, job_path: str, log_dir: Path) -> System:
    """The same web, its workers idle, while two plain processes outside offload count primes.

    What two busy cores alone cost the web on this machine: the floor for any design that runs
    the work on the same machine as the web.
    """
    burners: list[LoggedProcess] = []

    def start(jobs_each: int) -> None:
        for n in range(WORKERS):
            command = [sys.executable, "-c", BURNER]
            burners.append(start_logged(f"burner{n}", command, log_dir / f"burner{n}.log", child_env()))

    def running() -> int:
        return sum(burner.popen.poll() is None for burner in burners)

    def stop() -> None:
        while burners:
            burners.pop().stop()

    return System(web_url, job_path, start, running, lambda: running() == WORKERS, stop)


def p3b(ctx: Context) -> list[Row]:
    rounds, seconds = ctx.pick(2, 1), ctx.pick(5, 1)
    began = time.perf_counter()
    count_primes(LIMIT)
    job_seconds = time.perf_counter() - began
    # Enough jobs that both runners stay busy through both routes' loads, with room to spare.
    jobs_each = math.ceil(3 * (2 * (seconds + 1) + 2) / job_seconds)
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_redis(Path(scratch) / "redis") as server,
        running_web(Path(scratch), server.url) as web,
        running_workers(Path(scratch), server.url, WORKERS),
    ):
        connection = redis.Redis.from_url(server.url)
        try:
            system = offload_system(web.url, web.client, connection)
            offload = measure(system, rounds, seconds, jobs_each)
            burners = burner_system(web.url, system.job_path, Path(scratch))
            try:
                contention = measure(burners, rounds, seconds, jobs_each)
            finally:
                burners.stop()
        finally:
            connection.close()
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_web(Path(scratch), app="bench.background_app:app", name="background") as plain,
    ):
        baseline = measure(background_system(plain.url, plain.client), rounds, seconds, jobs_each)
    rows = []
    work = f"{WORKERS} count_primes({LIMIT:,}) running, c{CONNECTIONS}"
    for route, (idle, busy) in offload.items():
        rows.append(Row("P3b", f"{route} p99, {work} (offload's workers)", busy, idle,
                        "idle, same app", Better.LOWER, 1.5, unit="ms"))  # fmt: skip
    for route, (idle, busy) in contention.items():
        rows.append(Row("P3b ref", f"{route} p99, offload's web while 2 processes outside it count primes",
                        busy, idle, "idle, same app", Better.LOWER, None, unit="ms"))  # fmt: skip
    for route, (idle, busy) in baseline.items():
        rows.append(Row("P3b ref", f"{route} p99, {work} (FastAPI BackgroundTasks)", busy, idle,
                        "idle, same app", Better.LOWER, None, unit="ms"))  # fmt: skip
    return rows
