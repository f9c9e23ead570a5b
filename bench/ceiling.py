"""The ceiling of a one-thread worker core: a no-op job's cost with no slot threads and no RQ per-job path.

A measurement, not a worker. One thread takes a batch of jobs, claims them, calls each job's function,
writes `job started` and `job ended` as a worker does, and ends the batch's runs in one round trip,
all through offload's own pieces (SafeQueue.take, claim_many, fast_end, end_runs). None of what RQ's
`perform_job` adds is here: no timeout, no failure handling, no stop, no heartbeat while a job runs,
no second job while one waits, so it runs only the peer table's no-op `tick`. What the concurrent
worker (slot threads, RQ's `perform_job`, ends grouped as they come) costs above it is what a core
built that way could save: bench/PROFILES.md, "A one-thread core".

    python -m bench.jobcost --jobs 12000 --setting ceiling --setting "--kind concurrent --concurrency 16"

Run by bench.jobcost as the worker process (`python -m bench.ceiling`, REDIS_URL and JOBS_MODULE from
the environment); it runs until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from contextvars import Token
from typing import cast

import redis
from rq.exceptions import DequeueTimeout
from rq.job import Job, _current_job
from rq.utils import now

from service.catalog import load_catalog
from service.logs import configure_logging
from service.serializer import JSON
from service.store.end import End, end_runs
from service.store.queues import SafeQueue
from service.worker.finish import fast_end
from service.worker.main import build_worker
from service.worker.recovery import claim_many
from service.worker.report import report_end, report_start
from service.worker.worker import OffloadWorker

BATCH = 32  # jobs a take asks for: the concurrent worker's takes are about half its 16 slots
WAIT_SECONDS = 1  # how long an empty take blocks before it looks again


def drain(worker: OffloadWorker, stopping: Callable[[], bool]) -> int:
    """Take, claim, run and end batches of no-op jobs on this thread until `stopping()`; jobs run."""
    connection, done = worker.connection, 0
    queues, job_class = cast(list[SafeQueue], worker.queues), worker.job_class
    while not stopping():
        try:
            taken = SafeQueue.take(queues, BATCH, WAIT_SECONDS, connection, job_class, JSON)
        except DequeueTimeout:
            continue
        runs = claim_many(worker, [job for job, _queue in taken])
        ends: list[End] = []
        ran: list[Job] = []
        for (job, _queue), execution in zip(taken, runs, strict=True):
            if execution is None:
                continue
            report_start(worker, job)
            token: Token[Job | None] = _current_job.set(job)  # as RQ's perform_job sets it
            try:
                job._result = job.func(*job.args, **job.kwargs)
            finally:
                _current_job.reset(token)
            job.ended_at = now()
            end = fast_end(worker, job, execution)
            if end is None:
                raise RuntimeError(f"job {job.id}: not a plain no-op (the ceiling runs `tick` only)")
            ends.append(end)
            ran.append(job)
        if not all(end_runs(connection, ends)):
            raise RuntimeError("a job with dependents: the ceiling runs `tick` only")
        for job in ran:
            report_end(worker, job, "finished", counted=True)
        done += len(ran)
    return done


def main() -> int:
    configure_logging("text", "INFO")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopped.set())
    connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    worker = build_worker(connection, kind="concurrent", registry=load_catalog(os.environ["JOBS_MODULE"]))
    worker.register_birth()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated
    try:
        drain(worker, stopped.is_set)
    finally:
        worker.register_death()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main())
