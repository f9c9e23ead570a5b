"""Raw RQ: its FastAPI app (`rq_app:create_app`); the jobs are in rq_jobs.py.

RQ's defaults throughout (pickle serializer, default queue); the web keeps one `Queue` from its
lifespan and calls `queue.enqueue` from a sync route (a blocking client, in FastAPI's thread pool).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import bench_common as common
from fastapi import FastAPI, Request
from redis import Redis
from rq import Queue
from rq_jobs import io_wait, stamp, tick

FUNCTIONS: dict[str, Any] = {"tick": tick, "io_wait": io_wait, "stamp": stamp}


def create_app() -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connection = Redis.from_url(common.redis_url())
        app.state.queue = Queue(connection=connection)
        yield
        connection.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    def read_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{name}", status_code=202)
    def enqueue_job(name: str, request: Request) -> dict[str, str]:
        return {"id": request.app.state.queue.enqueue(FUNCTIONS[name]).id}

    return app


def enqueue(job: str, count: int, seconds: float) -> None:
    queue = Queue(connection=Redis.from_url(common.redis_url()))
    args = (seconds,) if job == "io_wait" else ()
    for start in range(0, count, 1000):  # RQ's batch API, in its order
        size = min(1000, count - start)
        queue.enqueue_many([Queue.prepare_data(FUNCTIONS[job], args) for _ in range(size)])
