"""SAQ: the worker settings (`saq saq_app.settings`) and its FastAPI app (`saq_app:create_app`).

The web connects the queue in its lifespan and awaits `queue.enqueue`, as SAQ's docs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import bench_common as common
from fastapi import FastAPI
from saq import Queue

queue = Queue.from_url(common.redis_url())


async def tick(ctx: dict[str, Any]) -> None:
    await ctx["worker"].queue.redis.rpush(common.DONE, repr(time.time()))


async def io_wait(ctx: dict[str, Any], *, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await ctx["worker"].queue.redis.rpush(common.DONE, repr(time.time()))


async def stamp(ctx: dict[str, Any]) -> None:
    await ctx["worker"].queue.redis.rpush(common.STARTED, repr(time.time()))


settings = {"queue": queue, "functions": [tick, io_wait, stamp], "concurrency": 50}


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await queue.connect()
        yield
        await queue.disconnect()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def read_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{name}", status_code=202)
    async def enqueue_job(name: str) -> dict[str, str]:
        job = await queue.enqueue(name)
        return {"id": job.id if job else ""}

    return app


def enqueue(job: str, count: int, seconds: float) -> None:
    async def run() -> None:
        await queue.connect()
        kwargs = {"seconds": seconds} if job == "io_wait" else {}
        for _ in range(count):
            await queue.enqueue(job, **kwargs)
        await queue.disconnect()

    asyncio.run(run())
