"""arq: the worker settings (`arq arq_app.WorkerSettings`) and its FastAPI app (`arq_app:create_app`).

The web keeps one `ArqRedis` pool from its lifespan and awaits `enqueue_job`, as arq's docs do.
arq polls its queue every `poll_delay` (0.5 s by default) and starts at most `max_jobs` jobs a
poll; ARQ_POLL_DELAY sets it per run (bench/peers/arq.py says which rows use what).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import bench_common as common
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from fastapi import FastAPI, Request

REDIS = RedisSettings.from_dsn(common.redis_url())


async def tick(ctx: dict[str, Any]) -> None:
    await ctx["redis"].rpush(common.DONE, repr(time.time()))


async def io_wait(ctx: dict[str, Any], seconds: float) -> None:
    await asyncio.sleep(seconds)
    await ctx["redis"].rpush(common.DONE, repr(time.time()))


async def stamp(ctx: dict[str, Any]) -> None:
    await ctx["redis"].rpush(common.STARTED, repr(time.time()))


class WorkerSettings:
    functions = (tick, io_wait, stamp)
    redis_settings = REDIS
    max_jobs = 50
    poll_delay = float(os.environ.get("ARQ_POLL_DELAY", "0.5"))


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.arq = await create_pool(REDIS)
        yield
        await app.state.arq.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def read_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{name}", status_code=202)
    async def enqueue_job(name: str, request: Request) -> dict[str, str]:
        pool: ArqRedis = request.app.state.arq
        job = await pool.enqueue_job(name)
        return {"id": job.job_id if job else ""}

    return app


def enqueue(job: str, count: int, seconds: float) -> None:
    async def run() -> None:
        pool = await create_pool(REDIS)
        args = (seconds,) if job == "io_wait" else ()
        for _ in range(count):  # one by one: the queue keeps the order they were sent in
            await pool.enqueue_job(job, *args)
        await pool.aclose()

    asyncio.run(run())
