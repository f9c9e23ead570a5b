"""offload's side of the peer jobs (JOBS_MODULE=bench.peers.offload_jobs for its web and worker).

The same three jobs as every peer's (apps/bench_common.py): one RPUSH of a time each, through the
connection RQ already holds for the running job, as raw RQ's do (apps/rq_app.py). And `tick_async`,
for bench.jobcost only: the no-op as async peers write it, its RPUSH through an asyncio client.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio

from service.catalog import current_job, job

DONE = "bench:done"  # the same keys as apps/bench_common.py
STARTED = "bench:started"


def _push(key: str) -> None:
    current = current_job()
    if current is None:
        raise RuntimeError("a bench job runs inside a worker")
    current.connection.rpush(key, repr(time.time()))


# An asyncio client per event loop: a client is bound to the loop it first ran on. A worker that runs
# each async job on a new loop (`--kind simple`) would make one a job: tick_async is for the
# concurrent kind's shared loop and bench/ceiling.py's.
_async_clients: dict[asyncio.AbstractEventLoop, redis.asyncio.Redis] = {}


async def _push_async(key: str) -> None:
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
    await client.rpush(key, repr(time.time()))


@job(queue="default", timeout=60)
def tick() -> None:
    """No-op: mark the end."""
    _push(DONE)


@job(queue="default", timeout=60)
async def tick_async() -> None:
    """No-op, the asyncio way: mark the end."""
    await _push_async(DONE)


@job(queue="default", timeout=60)
def io_wait(seconds: float = 0.5) -> None:
    """Wait on I/O (a sleep), then mark the end."""
    time.sleep(seconds)
    _push(DONE)


@job(queue="default", timeout=60)
async def io_wait_async(seconds: float = 0.5) -> None:
    """Wait on I/O the asyncio way, then mark the end (the push, a few microseconds, in a thread)."""
    await asyncio.sleep(seconds)
    _push(DONE)


@job(queue="default", timeout=60)
def stamp() -> None:
    """Mark the start."""
    _push(STARTED)
