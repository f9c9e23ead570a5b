"""The ceiling of a one-thread worker core: a no-op job's cost with no slot threads and no RQ per-job path.

A measurement, not a worker. One thread takes a batch of jobs, claims them, runs them, writes `job
started` and `job ended` as a worker does, and ends the batch's runs in one round trip, all through
offload's own pieces (SafeQueue.take, claim_many, fast_end, end_runs). None of what RQ's
`perform_job` adds is here: no timeout, no failure handling, no stop, no heartbeat while a job runs,
so it runs only the no-op jobs `tick` (sync: one job at a time, each waiting out its own round trip)
and, with `--async`, `tick_async` (up to ASYNC_SLOTS at once on this thread's event loop, their
round trips overlapping; the bookkeeping's calls block the loop, as a first cut would). What the
concurrent worker (slot threads, RQ's `perform_job`, ends grouped as they come) costs above it is
what a core built that way could save: bench/PROFILES.md, "A one-thread core".

    python -m bench.jobcost --jobs 12000 --setting ceiling --setting "--kind concurrent --concurrency 16"
    python -m bench.jobcost --jobs 12000 --job tick_async --setting "ceiling --async" \
        --setting "--kind concurrent --concurrency 50"

Run by bench.jobcost as the worker process (`python -m bench.ceiling [--async]`, REDIS_URL and
JOBS_MODULE from the environment); it runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Token
from typing import cast

import redis
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
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

BATCH = 32  # jobs a take asks for: more than the concurrent worker's (half its slots), a best case
WAIT_SECONDS = 1  # how long an empty take blocks before it looks again
ASYNC_SLOTS = 50  # async jobs at once, as the peer table's concurrent 50; taken once half are free


def drain(worker: OffloadWorker, stopping: Callable[[], bool]) -> int:
    """Take, claim, run and end batches of no-op jobs on this thread until `stopping()`; jobs run."""
    done = 0
    while not stopping():
        taken = _take(worker, BATCH, WAIT_SECONDS)
        ended: list[tuple[Job, End]] = []
        for job, execution in taken:
            with _running(worker, job):
                job._result = job.func(*job.args, **job.kwargs)
            ended.append(_ended(worker, job, execution))
        done += _end(worker, ended)
    return done


async def drain_async(worker: OffloadWorker, stopping: Callable[[], bool], slots: int = ASYNC_SLOTS) -> int:
    """As `drain`, for async no-op jobs: up to `slots` at once on this event loop; jobs run."""
    running: set[asyncio.Task[None]] = set()
    ended: list[tuple[Job, End]] = []
    done = 0

    async def run(job: Job, execution: Execution) -> None:
        with _running(worker, job):
            job._result = await job.func(*job.args, **job.kwargs)
        ended.append(_ended(worker, job, execution))

    while not stopping() or running:
        taken = []
        if not stopping() and (len(running) <= slots // 2):
            taken = _take(worker, slots - len(running), None if running else WAIT_SECONDS)
        for job, execution in taken:
            task = asyncio.ensure_future(run(job, execution))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.sleep(0)  # the jobs just started run to their first wait
        batch, ended = ended, []
        done += _end(worker, batch)
        if running and not taken:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED, timeout=WAIT_SECONDS)
    return done + _end(worker, ended)  # the last to finish


@contextmanager
def _running(worker: OffloadWorker, job: Job) -> Iterator[None]:
    """`job started`, and the job current (`current_job()`) while it runs, as RQ's perform_job sets it."""
    report_start(worker, job)
    token: Token[Job | None] = _current_job.set(job)
    try:
        yield
    finally:
        _current_job.reset(token)


def _take(worker: OffloadWorker, count: int, wait: int | None) -> list[tuple[Job, Execution]]:
    """Up to `count` jobs taken and claimed, in two round trips; `wait` s for the first (None: not)."""
    queues = cast(list[SafeQueue], worker.queues)
    try:
        taken = SafeQueue.take(queues, count, wait, worker.connection, worker.job_class, JSON)
    except DequeueTimeout:
        return []
    runs = claim_many(worker, [job for job, _queue in taken]) if taken else []
    return [(job, execution) for (job, _queue), execution in zip(taken, runs, strict=True) if execution]


def _ended(worker: OffloadWorker, job: Job, execution: Execution) -> tuple[Job, End]:
    job.ended_at = now()
    end = fast_end(worker, job, execution)
    if end is None:
        raise RuntimeError(f"job {job.id}: not a plain no-op (the ceiling runs `tick` only)")
    return job, end


def _end(worker: OffloadWorker, ended: list[tuple[Job, End]]) -> int:
    """End the runs in one round trip, then report them; how many."""
    if not all(end_runs(worker.connection, [end for _job, end in ended])):
        raise RuntimeError("a job with dependents: the ceiling runs `tick` only")
    for job, _ in ended:
        report_end(worker, job, "finished", counted=True)
    return len(ended)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--async", dest="asynchronous", action="store_true", help="tick_async jobs, 50 at once"
    )
    args = parser.parse_args(argv)
    configure_logging("text", "INFO")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopped.set())
    connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    worker = build_worker(connection, kind="concurrent", registry=load_catalog(os.environ["JOBS_MODULE"]))
    worker.register_birth()  # type: ignore[no-untyped-call]  # RQ leaves it unannotated
    try:
        if args.asynchronous:
            asyncio.run(drain_async(worker, stopped.is_set))
        else:
            drain(worker, stopped.is_set)
    finally:
        worker.register_death()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main())
