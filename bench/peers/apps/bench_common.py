"""What every peer's app shares (stdlib and redis-py only: it runs in each peer's own venv).

The three jobs mark Redis the same way in every system, so one driver times them all: `tick`
(the no-op) and `io_wait` push their end time to DONE, `stamp` pushes its start time to STARTED.
One RPUSH a job, the same command for every peer and for offload (bench/peers/offload_jobs.py).
"""

from __future__ import annotations

import os
import time

import redis

DONE = "bench:done"
STARTED = "bench:started"
JOBS = ("tick", "io_wait", "stamp")

_client: redis.Redis | None = None
_client_pid = 0


def redis_url() -> str:
    return os.environ["REDIS_URL"]


def client() -> redis.Redis:
    """This process's client, made on first use (a prefork pool's children each make their own)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client, _client_pid = redis.Redis.from_url(redis_url()), os.getpid()
    return _client


def mark_done() -> None:
    client().rpush(DONE, repr(time.time()))


def mark_started() -> None:
    client().rpush(STARTED, repr(time.time()))
