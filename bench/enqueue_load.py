"""P1 and P3a: `POST /jobs/{name}` under load, against `GET /healthz` and against the seed's endpoint.

P1: throughput and p99 of `POST /jobs/very_long_task` at 64 connections, against `GET /healthz` of
the same web process (the cheapest route: what the server, the framework and the middleware cost
without Redis), measured alternately over rounds, medians reported.

P3a: the seed's headline. The p99 of the same POST from 64 connections at a paced rate (PACE_MS),
and in a closed loop for reference, next to the seed's blocking endpoint (bench/seed_app.py, the
job run inside the request) served by the same uvicorn command; that one at a handful of
connections, since each holds its connection for the whole job.

No worker runs: the enqueued jobs wait in Redis, which is flushed between rounds.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import redis

from bench.load import Load, run_wrk
from bench.processes import Context, offload_web, running_web
from bench.report import Better, Row, median
from service.dev.harness import running_redis

CONNECTIONS = 64
# P3a's load: each of the 64 connections posts every 64 ms, about 1,000 requests/s offered (the
# blocking endpoint serves 64 / 5 s = 12.8 at most). A closed loop at 64 connections measures only
# throughput (p99 ≈ 64 / throughput: 20 ms would need 3,200 answers/s on two cores shared with wrk
# and Redis); it is reported beside it.
PACE_MS = 64.0
JOB_SECONDS = 5.0
ROUTE = "/jobs/very_long_task"


def p1(ctx: Context) -> list[Row]:
    rounds, seconds = ctx.pick(3, 1), ctx.pick(5, 1)
    health: list[tuple[float, float]] = []
    post: list[tuple[float, float]] = []
    body = json.dumps({"seconds": JOB_SECONDS})
    with offload_web(ctx) as (_, web, connection):
        run_wrk(f"{web.url}/healthz", connections=CONNECTIONS, seconds=1)  # warm up both paths
        run_wrk(f"{web.url}{ROUTE}", connections=CONNECTIONS, seconds=1, method="POST", body=body)
        for _ in range(rounds):
            connection.flushall()
            load = run_wrk(f"{web.url}/healthz", connections=CONNECTIONS, seconds=seconds)
            health.append((load.per_second, load.p99_ms))
            load = run_wrk(
                f"{web.url}{ROUTE}", connections=CONNECTIONS, seconds=seconds, method="POST", body=body
            )
            post.append((load.per_second, load.p99_ms))
    against = f"GET /healthz, same web, c{CONNECTIONS}"
    return [
        Row("P1", f"POST {ROUTE} throughput, c{CONNECTIONS}", median([r for r, _ in post]),
            median([r for r, _ in health]), against, Better.HIGHER, 0.5, unit="req/s"),
        Row("P1", f"POST {ROUTE} p99, c{CONNECTIONS}", median([p for _, p in post]),
            median([p for _, p in health]), against, Better.LOWER, 2.0, unit="ms"),
    ]  # fmt: skip


def p3a(ctx: Context) -> list[Row]:
    rounds, seconds = ctx.pick(3, 1), ctx.pick(5, 1)
    # Each blocking call holds its connection for the whole job: a few connections, one call each.
    held_seconds, held_connections = (1.0, 2) if ctx.quick else (JOB_SECONDS, 4)
    p99s: list[float] = []
    paced_rate = 0.0
    saturated: list[Load] = []
    body = json.dumps({"seconds": JOB_SECONDS})
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_redis(Path(scratch) / "redis") as server,
        running_web(Path(scratch), server.url) as web,
        running_web(Path(scratch), app="bench.seed_app:app", health="/docs", name="seed") as seed,
    ):
        connection = redis.Redis.from_url(server.url)
        try:
            run_wrk(f"{web.url}{ROUTE}", connections=CONNECTIONS, seconds=1, method="POST", body=body)
            for _ in range(rounds):
                connection.flushall()
                load = run_wrk(
                    f"{web.url}{ROUTE}",
                    connections=CONNECTIONS,
                    seconds=seconds,
                    method="POST",
                    body=body,
                    pace_ms=PACE_MS,
                )
                p99s.append(load.p99_ms)
                paced_rate = load.per_second
                connection.flushall()
                saturated.append(
                    run_wrk(
                        f"{web.url}{ROUTE}",
                        connections=CONNECTIONS,
                        seconds=seconds,
                        method="POST",
                        body=body,
                    )
                )
        finally:
            connection.close()
        held = run_wrk(
            f"{seed.url}/blocking/very_long_task?seconds={held_seconds:g}",
            connections=held_connections,
            threads=1,
            seconds=held_seconds + 1,
            method="POST",
            timeout=held_seconds + 10,
        )
    rate = round(paced_rate)
    at_most = median([load.per_second for load in saturated])
    blocking = f"seed's blocking endpoint, {held_seconds:g} s job, c{held_connections}"
    return [
        Row("P3a", f"POST {ROUTE} ({JOB_SECONDS:g} s job) p99, c{CONNECTIONS}, {rate:,} req/s offered",
            median(p99s), held.p99_ms, blocking, Better.LOWER, 20.0, absolute=True, unit="ms"),
        Row("P3a ref", f"the same, c{CONNECTIONS} closed loop (saturated, {at_most:,.0f} req/s)",
            median([load.p99_ms for load in saturated]), held.p99_ms, blocking, Better.LOWER, None,
            unit="ms"),
    ]  # fmt: skip
