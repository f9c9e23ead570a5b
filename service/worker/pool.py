"""A recycled process pool (`python -m service.worker --processes N`), prefork style like Celery's.

The pool process runs no job. It forks N children; each is offload's in-process worker (`--kind
simple`, built by `build_worker`), so every guarantee of that kind holds in each: the take through
the intermediate list and the claim (service/store/queues.py, recovery.py), the reports, the
announcements. A child runs many jobs, one at a time, with no fork per job, and is replaced by a
fresh one:

- after `max_jobs_per_child` jobs (WORKER_MAX_JOBS_PER_CHILD): it stops itself (RQ's `max_jobs`);
- when its resident memory exceeds `max_memory_mb` after a job (WORKER_MAX_MEMORY_MB): it stops
  before taking another (`OffloadWorker._stop_if_too_big`);
- when it dies (kill -9, the kernel's OOM killer, a crash in C code). Its running job is then
  recovered as any killed worker's: retried while it has retries left, else failed with
  AbandonedJobError. The pool makes the dead child's runs lapse at once (`lapse_runs`) and sweeps
  the registries itself, so that happens within a second or two rather than at the job's timeout
  plus a minute, when an in-process worker's run would lapse on its own.

A new child is started within a second of one ending (RQ's pool checks its children every second).

SIGTERM or SIGINT to the pool (a dyno restart, Ctrl-C) is forwarded to every child, which finishes
its running job and exits (the simple kind's warm shutdown); the pool exits once all have. Heroku
and honcho signal every process of the group at once: a child ignores the second signal within a
second of the first (RQ). A signal that comes later is a cold shutdown of the children, as a second
Ctrl-C to a simple worker. A child whose pool is SIGKILLed gets SIGTERM from the kernel and stops
the same warm way; it never runs on alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from multiprocessing.process import BaseProcess

from redis import Redis
from redis.exceptions import RedisError
from rq import worker_registration
from rq.worker_pool import ForkProcess, WorkerData, WorkerPool

from service import tracing
from service.catalog import Registry
from service.connection import connect
from service.serializer import JSON
from service.settings import Settings
from service.store.layout import WORKER_QUEUES, started_key, worker_key
from service.store.queues import SafeQueue
from service.worker.concurrent import ConcurrentWorker
from service.worker.main import build_worker
from service.worker.recovery import lapse_runs
from service.worker.shutdown import DEFAULT_GRACE_SECONDS
from service.worker.worker import InProcessWorker

log = logging.getLogger("offload.pool")


class OffloadPool(WorkerPool):
    """RQ's WorkerPool with offload's in-process workers as children, recycled, their deaths recovered."""

    def __init__(
        self,
        settings: Settings,
        connection: Redis,
        registry: Registry,
        num_workers: int,
        queues: Sequence[str] = WORKER_QUEUES,
        max_jobs_per_child: int | None = None,
        max_memory_mb: float | None = None,
        concurrency: int = 1,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        super().__init__(
            list(queues),
            connection,
            num_workers=num_workers,
            worker_class=InProcessWorker,
            serializer=JSON,
            queue_class=SafeQueue,
        )
        self.settings = settings
        self.registry = registry
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_mb = max_memory_mb
        self.concurrency = concurrency  # 1: simple children; more: concurrent ones, this many slots each
        self.grace_seconds = grace_seconds  # a concurrent child's, for its running jobs on SIGTERM
        # Sweeps the registries from the pool when a child died mid-job: a worker object that never
        # works, so the sweep is any worker's (RQ's maintenance lock, offload's intermediate lists).
        self._sweeper = build_worker(connection, queues, "simple", registry=registry)
        self._lapsed: set[tuple[str, str]] = set()  # (queue, run) of dead children, not yet swept

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> BaseProcess:
        gc.freeze()  # the pool's objects stay out of the children's collections: their pages stay shared
        return ForkProcess(
            target=run_child,
            args=(name, self._queue_names, self.settings, self.registry),
            kwargs={
                "burst": burst,
                "logging_level": logging_level,
                "max_jobs": self.max_jobs_per_child,
                "max_memory_mb": self.max_memory_mb,
                "pool_pid": os.getpid(),
                "concurrency": self.concurrency,
                "grace_seconds": self.grace_seconds,
            },
            name=f"offload pool {self.name} child {name}",
        )

    def check_workers(self, respawn: bool = True) -> None:
        # In burst mode RQ replaces no child; a child recycled while jobs wait is replaced all the same.
        if not respawn and self._burst and self.status != self.Status.STOPPED:
            respawn = any(queue.count for queue in self.queues)
        super().check_workers(respawn)
        self._sweep()

    def handle_dead_worker(self, worker_data: WorkerData) -> None:
        super().handle_dead_worker(worker_data)
        code = worker_data.process.exitcode
        try:
            lapsed = lapse_runs(self.connection, worker_data.name)
            # Its record would show in GET /workers until its heartbeat expired.
            self.connection.delete(worker_key(worker_data.name))
            for queue in self._sweeper.queues:
                worker_registration.clean_worker_registry(queue)
        except RedisError as exc:
            log.warning(
                "child %s: could not look for its running job (%s); RQ's sweep will", worker_data.pid, exc
            )
            return
        if lapsed:
            log.warning(
                "child %s died (exit code %s) while running %s; recovering it as abandoned",
                worker_data.pid,
                code,
                ", ".join(entry.split(":")[0] for _, entry in lapsed),
            )
            self._lapsed.update(lapsed)
            self._sweep()
        elif code not in (0, None):
            log.warning("child %s exited with code %s", worker_data.pid, code)

    def _sweep(self) -> None:
        """Sweep until every lapsed run of a dead child is recovered (another sweep may hold the lock)."""
        if not self._lapsed:
            return
        try:
            self._forget_swept()
            if self._lapsed:
                self._sweeper.clean_registries()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
                self._forget_swept()
        except RedisError as exc:
            log.warning("could not sweep the registries (%s); trying again in a second", exc)

    def _forget_swept(self) -> None:
        for queue, entry in list(self._lapsed):
            if self.connection.zscore(started_key(queue), entry) is None:
                self._lapsed.discard((queue, entry))


def run_child(
    name: str,
    queues: Sequence[str],
    settings: Settings,
    registry: Registry,
    *,
    burst: bool = False,
    logging_level: str = "INFO",
    max_jobs: int | None = None,
    max_memory_mb: float | None = None,
    pool_pid: int = 0,
    concurrency: int = 1,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> None:
    """A pool's child: offload's in-process worker (`concurrency` above 1: a concurrent one with that
    many slots), on a Redis connection of its own."""
    # The pool's handlers came with the fork; until the worker installs its own, a signal just ends
    # this child, which has taken no job yet.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _stop_with_parent(pool_pid)
    kind = "concurrent" if concurrency > 1 else "simple"
    worker = build_worker(connect(settings, patient=True), queues, kind, name, registry)
    worker.max_memory_mb = max_memory_mb
    if isinstance(worker, ConcurrentWorker):
        worker.concurrency = concurrency
        worker.grace_seconds = grace_seconds
        worker.max_runs, max_jobs = max_jobs, None  # RQ's count is of its loop's turns, not of runs
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=logging_level, max_jobs=max_jobs)
    finally:
        tracing.flush()  # a child ends with os._exit: the SDK's own flush at exit never runs


def _stop_with_parent(pool_pid: int) -> None:
    """Have the kernel send this child SIGTERM when its pool dies: a warm stop, never an orphan at work."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if pool_pid and os.getppid() != pool_pid:  # the pool died before prctl took effect
        os._exit(0)
