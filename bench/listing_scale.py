"""Listing cost against the number of jobs: `GET /jobs`, `/queues`, `/metrics` at N1 and N2 finished jobs.

    python -m bench.listing_scale [--small 1000] [--large 100000] [--calls 50]

A real redis-server on loopback; jobs written through offload's own enqueue path in batches,
then marked finished with a result the way a worker leaves them (status, finished registry,
result stream), which is what the listing reads. The app runs in this process (no HTTP server:
this measures the Redis work of a page, not the network). Prints the median time of each route
at both sizes and the ratio large/small; a ratio near 1 means the cost does not grow with the
number of jobs.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from redis import Redis
from rq.job import JobStatus
from rq.registry import FinishedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

import jobs
from jobs.enqueueing import enqueue
from service.app import create_app
from service.settings import Settings
from tests.integration.harness import running_redis

BATCH = 1000
ROUTES: dict[str, str] = {
    "GET /jobs (50)": "/jobs?limit=50",
    "GET /jobs?status=finished (50)": "/jobs?limit=50&status=finished",
    "GET /jobs?name=word_count (50)": "/jobs?limit=50&name=word_count",
    "GET /queues": "/queues",
    # Registry sizes, the workers' states and the counters' hash: no scan of the job records.
    "GET /metrics": "/metrics",
}


def fill(connection: Redis, total: int) -> None:
    """Enqueue word_count jobs until `total` exist, each marked finished with a result."""
    word_count = jobs.registry.get("word_count")
    assert word_count is not None
    existing = connection.zcard("offload:index")
    finished = FinishedJobRegistry("default", connection=connection, serializer=JSONSerializer)
    while existing < total:
        size = min(BATCH, total - existing)
        inputs = [word_count.input_model(text=f"job {existing + n}") for n in range(size)]
        written = enqueue(connection, word_count, inputs).jobs
        with connection.pipeline() as pipe:
            pipe.delete("rq:queue:default")
            for job in written:
                job.set_status(JobStatus.FINISHED, pipeline=pipe)
                finished.add(job, ttl=86400, pipeline=pipe)
                Result(job.id, Result.Type.SUCCESSFUL, connection=connection, return_value={"words": 2},
                       serializer=JSONSerializer).save(ttl=86400, pipeline=pipe)  # fmt: skip
            pipe.execute()
        existing += size


def median_ms(calls: int, call: Callable[[], object]) -> float:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(client: TestClient, calls: int) -> dict[str, float]:
    def get(path: str) -> None:
        response = client.get(path)
        assert response.status_code == 200, response.text

    for path in ROUTES.values():  # warm up
        get(path)
    return {label: median_ms(calls, functools.partial(get, path)) for label, path in ROUTES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, running_redis(Path(scratch) / "redis") as server:
        connection = Redis.from_url(server.url)
        app = create_app(Settings(redis_url=server.url), connection)
        with TestClient(app) as client:
            fill(connection, args.small)
            small = measure(client, args.calls)
            started = time.perf_counter()
            fill(connection, args.large)
            filled = time.perf_counter() - started
            large = measure(client, args.calls)
        memory = connection.info("memory")["used_memory"]
        connection.close()
    print(f"filled {args.large - args.small:,} jobs in {filled:.1f} s; Redis holds {memory / 2**20:.0f} MiB")
    print(f"{'route':<34} {f'{args.small:,} jobs':>12} {f'{args.large:,} jobs':>14} {'ratio':>7}")
    for label in ROUTES:
        print(
            f"{label:<34} {small[label]:>10.2f}ms {large[label]:>12.2f}ms {large[label] / small[label]:>7.2f}"
        )


if __name__ == "__main__":
    main()
