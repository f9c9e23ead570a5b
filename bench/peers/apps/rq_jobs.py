"""Raw RQ's jobs, which `rq worker` imports by their path: a module of their own, since a forking
worker imports it anew in every job's child (the web's FastAPI would cost ~0.2 s a job)."""

from __future__ import annotations

import time

import bench_common as common
from rq.job import get_current_job


def _push(key: str) -> None:
    # The connection RQ holds for the running job, as offload's jobs do (bench/peers/offload_jobs.py):
    # a forking worker's horse would otherwise open a connection of its own for every job.
    get_current_job().connection.rpush(key, repr(time.time()))


def tick() -> None:
    _push(common.DONE)


def io_wait(seconds: float) -> None:
    time.sleep(seconds)
    _push(common.DONE)


def stamp() -> None:
    _push(common.STARTED)
