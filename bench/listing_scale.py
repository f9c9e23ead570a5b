"""P5: the listing routes at 1,000,000 queued and 100,000 finished jobs, against 1,000 and 100.

Two real redis-servers, each with the Procfile's web, on loopback: one at each size. Jobs are
written through offload's own enqueue (batches of 1,000, one script each) from as many
processes as the machine has cores: `word_count` jobs left queued on `default`, and others on
`low` marked finished with a result the way a worker leaves them (status, finished registry,
result), which is what the listings read. Each route is timed by sequential calls from one
keep-alive client per web, a call to the small one then one to the large one in turn, medians
reported: a ratio near 1 means its cost does not grow with the number of jobs. Redis's
`used_memory` before and after each fill gives the memory a job takes.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx2
from redis import Redis
from rq.job import JobStatus
from rq.registry import FinishedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp

from bench.processes import Context, running_web
from bench.report import Better, Row, median
from service.catalog import load_catalog
from service.dev.harness import running_redis
from service.store.enqueue import enqueue
from service.store.layout import job_key
from service.store.options import EnqueueOptions

BATCH = 1000
Medians = dict[str, float]  # ms by route label
FILL_TIMEOUT = 900.0
ROUTES: dict[str, str] = {
    "GET /jobs?limit=50": "/jobs?limit=50",
    "GET /jobs?limit=50&status=finished": "/jobs?limit=50&status=finished",
    "GET /jobs?limit=50&name=word_count": "/jobs?limit=50&name=word_count",
    "GET /queues": "/queues",
    "GET /metrics": "/metrics",
}


def fill_part(redis_url: str, count: int, first: int, finished: bool) -> None:
    """Enqueue `count` word_count jobs (numbered from `first`); `finished`: on `low`, then finished."""
    word_count = load_catalog().get("word_count")
    assert word_count is not None
    connection = Redis.from_url(redis_url)
    options = EnqueueOptions(queue="low") if finished else None
    registry = FinishedJobRegistry("low", connection=connection, serializer=JSONSerializer)
    try:
        for start in range(first, first + count, BATCH):
            size = min(BATCH, first + count - start)
            inputs = [word_count.input_model(text=f"job {start + n}") for n in range(size)]
            written = enqueue(connection, word_count, inputs, options).ids  # one script a batch
            if not finished:
                continue
            with connection.pipeline() as pipe:
                pipe.delete("rq:queue:low")  # only finished jobs go to `low` here
                for job_id in written:
                    pipe.hset(job_key(job_id), "status", JobStatus.FINISHED.value)
                    pipe.zadd(registry.key, {job_id: current_timestamp() + 86400})
                    Result(job_id, Result.Type.SUCCESSFUL, connection=connection, return_value={"words": 2},
                           serializer=JSONSerializer).save(ttl=86400, pipeline=pipe)  # fmt: skip
                pipe.execute()
    finally:
        connection.close()


def fill(redis_url: str, count: int, first: int, finished: bool) -> None:
    """`count` jobs, split over one process per core."""
    if count <= 0:
        return
    parts = max(1, min(os.cpu_count() or 1, count // BATCH))
    share = -(-count // parts)
    spawn = multiprocessing.get_context("spawn")  # a clean interpreter: nothing of ours inherited
    with ProcessPoolExecutor(parts, mp_context=spawn) as pool:
        futures = [
            pool.submit(fill_part, redis_url, min(share, count - n * share), first + n * share, finished)
            for n in range(parts)
            if count - n * share > 0
        ]
        for future in futures:
            future.result(timeout=FILL_TIMEOUT)


def measure(
    small: httpx2.Client, large: httpx2.Client, calls: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms of each route on both sizes, their calls alternating: both see the same machine."""

    def timed(client: httpx2.Client, path: str) -> float:
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text
        return elapsed

    medians: tuple[Medians, Medians] = ({}, {})
    for label, path in ROUTES.items():
        samples: tuple[list[float], list[float]] = ([], [])
        for client in (small, large):  # warm up
            timed(client, path)
        for _ in range(calls):
            for n, client in enumerate((small, large)):
                samples[n].append(timed(client, path))
        for n in range(2):
            medians[n][label] = median(samples[n])
    return medians


def p5(ctx: Context) -> list[Row]:
    queued = (1000, ctx.pick(1_000_000, 20_000))
    done = (100, ctx.pick(100_000, 2_000))
    calls = ctx.pick(50, 10)
    # Two stacks side by side, one at each size, timed call for call in turn: a drift of the
    # machine (the fill's aftermath, other load) falls on both sizes alike.
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_redis(Path(scratch) / "redis-small") as small_server,
        running_web(Path(scratch), small_server.url, name="web-small") as small_web,
        running_redis(Path(scratch) / "redis") as server,
        running_web(Path(scratch), server.url) as web,
    ):
        connections = [Redis.from_url(small_server.url), Redis.from_url(server.url)]
        connection = connections[1]
        try:
            for each in connections:
                # The routes' cost as jobs grow is the figure, not persistence's: with its
                # append-only file Redis rewrote gigabytes of it in the background after the
                # fill, a core busy through the timing.
                each.config_set("appendonly", "no")
            for url in (small_server.url, server.url):
                fill(url, done[0], 0, finished=True)
                fill(url, queued[0], done[0], finished=False)
            memory = connection.info("memory")["used_memory"]
            began = time.perf_counter()
            fill(server.url, queued[1] - queued[0], sum(done) + queued[0], finished=False)
            queued_seconds = time.perf_counter() - began
            per_queued = (connection.info("memory")["used_memory"] - memory) / (queued[1] - queued[0])
            memory = connection.info("memory")["used_memory"]
            fill(server.url, done[1] - done[0], done[0] + queued[1], finished=True)
            per_finished = (connection.info("memory")["used_memory"] - memory) / (done[1] - done[0])
            small, large = measure(small_web.client, web.client, calls)
        finally:
            for each in connections:
                each.close()
    print(f"  seeded {queued[1] - queued[0]:,} queued jobs in {queued_seconds:.0f} s", flush=True)
    size = f"{queued[1]:,} queued + {done[1]:,} finished"
    rows = [
        Row("P5", f"{label} at {size}, median of {calls}", large[label], small[label],
            f"{queued[0]:,} + {done[0]:,} jobs", Better.LOWER, 2.0, unit="ms")
        for label in ROUTES
    ]  # fmt: skip
    rows.append(Row("P5 ref", "Redis memory per queued word_count job", per_queued, per_finished,
                    "per finished job with its result", Better.LOWER, None, unit="B"))  # fmt: skip
    return rows
