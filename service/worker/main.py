"""The worker process (`python -m service.worker`): RQ's worker on offload's queues, only the catalogue."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

from service import tracing
from service.catalog import Registry, load_catalog
from service.connection import connect
from service.logs import configure_logging
from service.serializer import JSON
from service.settings import Settings, load_settings
from service.store.layout import WORKER_QUEUES
from service.store.queues import SafeQueue
from service.worker.concurrent import DEFAULT_CONCURRENCY, ConcurrentWorker
from service.worker.job import OffloadJob
from service.worker.recovery import worker_options
from service.worker.worker import WORKER_CLASSES, ForkWorker, OffloadWorker

# Each kind of worker process: --kind.
WORKER_KINDS: dict[str, type[OffloadWorker]] = {**WORKER_CLASSES, "concurrent": ConcurrentWorker}


def nice_own_autogroup(nice: int, autogroup: Path = Path("/proc/self/autogroup")) -> None:
    """Give this worker's scheduling group the niceness its processes have.

    With Linux's autogroup (on by default in most distributions) the CPU is shared fairly between
    sessions first, and a process's niceness only counts within its session. honcho (`make run`)
    and the test harness start each process in a session of its own, so a worker at nice 19 still
    got a full share against the web: two CPU-bound jobs quadrupled the web's p99 as if not niced.
    Only a session leader, alone in its session, changes it: in a terminal's session the group is
    the shell's and everything started from it.
    """
    if os.getsid(0) != os.getpid():
        return
    with contextlib.suppress(OSError):  # no autogroup (other kernels, containers): niceness alone
        autogroup.write_text(str(nice))


def build_worker(
    connection: Any,
    queues: Sequence[str] = WORKER_QUEUES,
    kind: str = "fork",
    name: str | None = None,
    registry: Registry | None = None,
) -> OffloadWorker:
    """A worker on `queues` in priority order, with the JSON serializer and the registry's jobs."""
    catalog = registry if registry is not None else load_catalog()
    job_class = cast(type[OffloadJob], type("OffloadJob", (OffloadJob,), {"registry": catalog}))
    return WORKER_KINDS[kind](
        [SafeQueue(q, connection=connection, serializer=JSON) for q in queues],
        connection=connection,
        serializer=JSON,
        queue_class=SafeQueue,
        job_class=job_class,
        name=name,
        # RQ would log each job's arguments, which may hold personal data or secrets; the job's
        # own lines (service/worker/report.py) name it by id and job name instead.
        log_job_description=False,
        **worker_options(),
    )


def main(argv: Sequence[str] | None = None) -> None:
    # A crash of the interpreter (a C extension's, say) leaves every thread's stack in the log; an
    # stderr with no file behind it (a test runner's capture) has none to leave it in.
    with contextlib.suppress(io.UnsupportedOperation, AttributeError, ValueError):
        faulthandler.enable()
    parser = argparse.ArgumentParser(description="Run an offload worker (REDIS_URL from the environment).")
    parser.add_argument("queues", nargs="*", default=list(WORKER_QUEUES), help="queues in priority order")
    parser.add_argument(
        "--kind",
        choices=sorted(WORKER_KINDS),
        help="concurrent (default: WORKER_KIND, else concurrent): up to --concurrency jobs at once in "
        "this process, sync ones in threads, async ones on one event loop; fork: each job in a child "
        "process of its own (isolated); simple: one job at a time in this process",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="up to N jobs at once in this process, or in each child of a pool (--kind concurrent; "
        f"default: WORKER_CONCURRENCY, else {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="a pool of N child processes, each running many jobs in-process (one at a time, or up to "
        "--concurrency at once), replaced when they die or reach a limit (default: WORKER_PROCESSES, "
        "else no pool: one process of --kind)",
    )
    parser.add_argument(
        "--max-jobs-per-child", type=int, metavar="N", help="default: WORKER_MAX_JOBS_PER_CHILD"
    )
    parser.add_argument(
        "--max-memory-per-child", type=float, metavar="MB", help="default: WORKER_MAX_MEMORY_MB"
    )
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    parser.add_argument("--log-level", help="default: LOG_LEVEL, else INFO")
    args = parser.parse_args(argv)
    unknown = set(args.queues) - set(WORKER_QUEUES)
    if unknown:
        parser.error(f"unknown queues {sorted(unknown)}; queues are {', '.join(WORKER_QUEUES)}")
    settings = load_settings()
    processes = args.processes
    if processes is None and args.kind in (None, "simple") and args.concurrency is None:
        # A Procfile line that names its kind keeps it, whatever the environment says.
        processes = settings.worker_processes
    pool_error = _pool_error(args, processes)
    if pool_error:
        parser.error(pool_error)
    concurrency_error = _concurrency_error(args, args.concurrency, processes)
    if concurrency_error:
        parser.error(concurrency_error)
    if processes is None:
        args.kind = args.kind or ("concurrent" if args.concurrency is not None else settings.worker_kind)
    concurrency = args.concurrency or settings.worker_concurrency
    level = (args.log_level or settings.log_level).upper()
    # RQ's own lines (rq.worker, rq.job, rq.scheduler) then go through this handler, in LOG_FORMAT.
    configure_logging(settings.log_format, level)
    tracing.configure("offload-worker")  # only if OTEL_* asks for it; a pool's children inherit it
    # Lower priority for this process and the work horses it forks, the jobs it runs in threads, or
    # a pool's concurrent children (they inherit it): the web keeps the CPU it needs when jobs
    # compute on the same machine (a dyno, `make run`); they still get every idle cycle, and an
    # idle worker starts a job as soon. A simple worker, or a pool of them, is the latency option,
    # at the web's priority.
    children = _child_concurrency(args, settings) if processes is not None else 1
    yields = (children > 1) if processes is not None else (args.kind != "simple")
    if yields:
        os.nice(settings.worker_nice)
        nice_own_autogroup(settings.worker_nice)
    if processes is not None:
        from service.worker.pool import OffloadPool  # imports this module: not at the top

        pool = OffloadPool(
            settings,
            connect(settings, patient=True),
            load_catalog(settings.jobs_module),
            processes,
            args.queues,
            max_jobs_per_child=_first(args.max_jobs_per_child, settings.worker_max_jobs_per_child),
            max_memory_mb=_first(args.max_memory_per_child, settings.worker_max_memory_mb),
            concurrency=children,
            grace_seconds=settings.worker_grace_seconds,
        )
        pool.start(burst=args.burst, logging_level=level)
        return
    worker = build_worker(
        connect(settings, patient=True), args.queues, args.kind, args.name, load_catalog(settings.jobs_module)
    )
    if isinstance(worker, ForkWorker):  # a simple worker cannot interrupt the job it runs
        worker.grace_seconds = settings.worker_grace_seconds
        worker.idle_priority = settings.job_idle_priority
    if isinstance(worker, ConcurrentWorker):
        worker.grace_seconds = settings.worker_grace_seconds
        worker.concurrency = concurrency
    # SIGTERM/SIGINT: RQ's warm shutdown; the running job has the grace period to finish, else it
    # goes back to its queue (a second signal: at once). A simple worker waits for it to finish.
    worker.work(burst=args.burst, with_scheduler=True, logging_level=level)


def _pool_error(args: argparse.Namespace, processes: int | None) -> str | None:
    """What is wrong with the pool options given, if anything."""
    if processes is None:
        if args.max_jobs_per_child is not None or args.max_memory_per_child is not None:
            return "only a pool's children are recycled: add --processes N"
        return None
    if processes < 1:
        return "--processes needs at least 1"
    if args.kind not in (None, "simple", "concurrent"):
        return (
            f"a pool's children run their jobs in-process (--kind simple, or concurrent); --kind {args.kind} "
            "has no pool"
        )
    if args.name:
        return "a pool names each child itself; --name is for one worker process"
    for value in (args.max_jobs_per_child, args.max_memory_per_child):
        if value is not None and value <= 0:
            return "a child's limits must be positive"
    return None


def _concurrency_error(
    args: argparse.Namespace, concurrency: int | None, processes: int | None
) -> str | None:
    """What is wrong with the concurrency asked for, if anything."""
    if concurrency is None:
        return None
    if concurrency < 1:
        return "--concurrency needs at least 1"
    if concurrency > 1 and args.kind not in (None, "concurrent"):
        return (
            f"--kind {args.kind} runs one job at a time; --concurrency {concurrency} needs --kind concurrent"
        )
    return None


def _child_concurrency(args: argparse.Namespace, settings: Settings) -> int:
    """A pool child's slots: 1 (a simple child) unless more were asked for, with --concurrency, --kind
    concurrent, or WORKER_CONCURRENCY or WORKER_KIND=concurrent set in the environment."""
    if args.concurrency is not None:
        return int(args.concurrency)
    given = settings.model_fields_set
    asked = (
        args.kind == "concurrent"
        or "worker_concurrency" in given
        or ("worker_kind" in given and settings.worker_kind == "concurrent")
    )
    return settings.worker_concurrency if asked else 1


T = TypeVar("T")


def _first(given: T | None, default: T | None) -> T | None:
    return given if given is not None else default
