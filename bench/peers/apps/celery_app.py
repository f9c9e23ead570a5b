"""Celery: the worker app (`celery -A celery_app worker …`) and its FastAPI app (`celery_app:create_app`).

Redis as the broker, no result backend (Celery stores no result unless one is configured), the
rest Celery's defaults. The web enqueues with `.delay()` from a sync route (Celery's client
blocks; FastAPI runs sync routes in its thread pool), as Celery's FastAPI examples do.
"""

from __future__ import annotations

import time
from typing import Any

import bench_common as common
from celery import Celery
from fastapi import FastAPI

celery = Celery("bench", broker=common.redis_url())
celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@celery.task
def tick() -> None:
    common.mark_done()


@celery.task
def io_wait(seconds: float) -> None:
    time.sleep(seconds)
    common.mark_done()


@celery.task
def stamp() -> None:
    common.mark_started()


TASKS: dict[str, Any] = {"tick": tick, "io_wait": io_wait, "stamp": stamp}


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def read_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{name}", status_code=202)
    def enqueue_job(name: str) -> dict[str, str]:
        return {"id": TASKS[name].delay().id}

    return app


def enqueue(job: str, count: int, seconds: float) -> None:
    args = (seconds,) if job == "io_wait" else ()
    for _ in range(count):
        TASKS[job].apply_async(args)
