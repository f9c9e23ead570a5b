"""P2: `POST /jobs/{name}/batch` jobs per second against RQ's own `Queue.enqueue_many`, in process.

Both write batches of the same `word_count` jobs (same input, timeout and TTLs, RQ's JSON
serializer) to the same Redis, one batch at a time: the web through one wrk connection, RQ from
this process. Alternate rounds, Redis flushed before each, medians reported. What the ratio
charges offload with: HTTP, validation, the listing index, the counters and the response's views.
"""

from __future__ import annotations

import json
import time
import uuid

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.load import run_wrk
from bench.processes import Context, offload_web
from bench.report import Better, Row, median
from service.catalog import load_catalog

BATCH = 500
TEXT = "the quick brown fox jumps over the lazy dog"


def enqueue_many_rate(connection: redis.Redis, seconds: float) -> float:
    """Jobs per second that RQ's `enqueue_many` writes, one batch after another, for `seconds`."""
    word_count = load_catalog().get("word_count")
    assert word_count is not None
    defaults = word_count.defaults
    queue = Queue(defaults.queue, connection=connection, serializer=JSONSerializer)
    written = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        batch = [
            Queue.prepare_data(
                word_count.func,
                kwargs={"text": TEXT, "top": 10},
                timeout=defaults.timeout,
                result_ttl=defaults.result_ttl,
                failure_ttl=defaults.failure_ttl,
                job_id=str(uuid.uuid4()),
            )
            for _ in range(BATCH)
        ]
        written += len(queue.enqueue_many(batch))
    return written / elapsed


def p2(ctx: Context) -> list[Row]:
    rounds, seconds = ctx.pick(3, 1), ctx.pick(5, 1)
    body = json.dumps([{"text": TEXT}] * BATCH)
    url_path = "/jobs/word_count/batch"
    offload: list[float] = []
    rq: list[float] = []
    with offload_web(ctx) as (_, web, connection):
        run_wrk(f"{web.url}{url_path}", connections=1, seconds=1, method="POST", body=body)  # warm up
        enqueue_many_rate(connection, 0.5)
        for _ in range(rounds):
            connection.flushall()
            load = run_wrk(f"{web.url}{url_path}", connections=1, seconds=seconds, method="POST", body=body)
            offload.append(load.per_second * BATCH)
            connection.flushall()
            rq.append(enqueue_many_rate(connection, seconds))
    return [
        Row("P2", f"POST {url_path}, {BATCH} jobs a request, 1 client", median(offload), median(rq),
            f"RQ Queue.enqueue_many in process, {BATCH} a call", Better.HIGHER, 0.8, unit="jobs/s"),
    ]  # fmt: skip
