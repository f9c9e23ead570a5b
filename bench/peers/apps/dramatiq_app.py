"""Dramatiq: the actors (`dramatiq dramatiq_app …`) and its FastAPI app (`dramatiq_app:create_app`).

The Redis broker with its default middleware; `actor.send()` from a sync route (a blocking
client, run in FastAPI's thread pool).
"""

from __future__ import annotations

import time
from typing import Any

import bench_common as common
import dramatiq
from dramatiq.brokers.redis import RedisBroker
from fastapi import FastAPI

dramatiq.set_broker(RedisBroker(url=common.redis_url()))


@dramatiq.actor(max_retries=0)
def tick() -> None:
    common.mark_done()


@dramatiq.actor(max_retries=0)
def io_wait(seconds: float) -> None:
    time.sleep(seconds)
    common.mark_done()


@dramatiq.actor(max_retries=0)
def stamp() -> None:
    common.mark_started()


ACTORS: dict[str, Any] = {"tick": tick, "io_wait": io_wait, "stamp": stamp}


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def read_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{name}", status_code=202)
    def enqueue_job(name: str) -> dict[str, str]:
        return {"id": ACTORS[name].send().message_id}

    return app


def enqueue(job: str, count: int, seconds: float) -> None:
    args = (seconds,) if job == "io_wait" else ()
    for _ in range(count):
        ACTORS[job].send(*args)
