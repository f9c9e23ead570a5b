"""taskiq: the broker (`taskiq worker taskiq_app:broker …`) and its FastAPI app (`taskiq_app:create_app`).

taskiq-redis's RedisStreamBroker (the one its README shows first: acknowledged deliveries), no
result backend. The web starts the broker in its lifespan and awaits `task.kiq()`, as taskiq's
FastAPI guide does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import bench_common as common
import redis.asyncio
from fastapi import FastAPI
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(url=common.redis_url())
_marks: redis.asyncio.Redis | None = None


def marks() -> redis.asyncio.Redis:
    """The worker's client for the marks, made on first use inside its event loop."""
    global _marks
    if _marks is None:
        _marks = redis.asyncio.Redis.from_url(common.redis_url())
    return _marks


@broker.task
async def tick() -> None:
    await marks().rpush(common.DONE, repr(time.time()))


@broker.task
async def io_wait(seconds: float) -> None:
    await asyncio.sleep(seconds)
    await marks().rpush(common.DONE, repr(time.time()))


@broker.task
async def stamp() -> None:
    await marks().rpush(common.STARTED, repr(time.time()))


TASKS: dict[str, Any] = {"tick": tick, "io_wait": io_wait, "stamp": stamp}


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broker.startup()
        yield
        await broker.shutdown()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def read_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{name}", status_code=202)
    async def enqueue_job(name: str) -> dict[str, str]:
        task = await TASKS[name].kiq()
        return {"id": task.task_id}

    return app


def enqueue(job: str, count: int, seconds: float) -> None:
    async def run() -> None:
        await broker.startup()  # declares the stream's consumer group before the first message
        args = (seconds,) if job == "io_wait" else ()
        for _ in range(count):
            await TASKS[job].kiq(*args)
        await broker.shutdown()

    asyncio.run(run())
