"""The worker process: RQ's worker on offload's queues, running only registered jobs."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from service.catalog import Registry, load_catalog
from service.connection import connect
from service.logs import configure_logging
from service.settings import load_settings
from service.store.layout import CALLBACK_HOOKS, WORKER_QUEUES, events_channel
from service.store.queues import SafeQueue
from service.worker import webhooks
from service.worker.recovery import (
    ClaimedRuns,
    FewerRoundTrips,
    PromptRecovery,
    StartedByClaim,
    worker_options,
)
from service.worker.report import RecordsSuccess, ReportingWorker
from service.worker.shutdown import GracefulStop

if TYPE_CHECKING:
    from redis.client import Pipeline


class AnnouncingWorker(RecordsSuccess):
    """Announces each state change of a job, once RQ has saved it, on the job's events channel.

    `GET /jobs/{id}/events` streams wake on it instead of polling. RQ writes a job's result only
    after the job function returns, so only the worker can say when the end is readable.
    """

    # "started" goes out with the claim that marks the job started (service/recovery.py).

    def record_success(self, job: Job, pipeline: Pipeline) -> None:
        super().record_success(job, pipeline)
        pipeline.publish(events_channel(job.id), "succeeded")  # in RQ's transaction that saves it

    def handle_job_failure(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_failure(job, *args, **kwargs)  # now failed, stopped, or due for a retry
        self._announce(job, "failed")

    def handle_job_retry(self, job: Job, *args: Any, **kwargs: Any) -> None:
        super().handle_job_retry(job, *args, **kwargs)
        self._announce(job, "retried")

    def _announce(self, job: Job, change: str) -> None:
        try:
            self.connection.publish(events_channel(job.id), change)
        except RedisError as exc:
            # Not worth failing a job over: streams re-read the job every second regardless.
            self.log.warning("could not announce job %s %s: %s", job.id, change, exc)


class ForkWorker(
    PromptRecovery,
    GracefulStop,
    ClaimedRuns,
    ReportingWorker,
    AnnouncingWorker,
    StartedByClaim,
    FewerRoundTrips,
    Worker,
):
    """RQ's forking worker, with a work horse that lets its worker decide when to stop.

    Heroku and honcho send SIGTERM to every process of a dyno, the work horse included; RQ's
    horse would die at once. Here it ignores SIGTERM, so the worker's warm shutdown lets the
    running job finish within its grace period, else puts it back on its queue (service/shutdown.py);
    a second signal does that at once, and SIGKILL still ends the horse with its worker.
    """

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        # A stop that comes between the claim and the fork: RQ would killpg(getpgid(0)), this
        # worker's own group. The horse is killed as soon as it exists instead (fork_work_horse).
        if self.horse_pid:
            super().kill_horse(sig)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        gc.freeze()
        super().fork_work_horse(job, queue)
        if self._stopped_job_id == job.id:  # stopped before its horse was there to kill
            self.kill_horse()

    idle_priority: bool = True  # JOB_IDLE_PRIORITY (main)

    def setup_work_horse_signals(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _die_with_parent()
        if self.idle_priority:
            _run_when_idle()


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this work horse when its worker dies.

    The horse runs in a process group of its own and ignores SIGTERM, so a supervisor that
    SIGKILLs the worker's group (honcho after its grace period) would otherwise leave it running,
    orphaned, until its job ends. Linux only; elsewhere the horse outlives a killed worker.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the worker died before prctl took effect
        os._exit(1)


def _run_when_idle() -> None:
    """Have this work horse run only on CPU time no other process wants (Linux's SCHED_IDLE).

    Nice still takes a share from a busy web: two CPU-bound jobs at nice 10 doubled the p99 of
    `GET /healthz` on two cores, at SCHED_IDLE about 1.2x. Only the horse: its worker, which
    keeps the job's heartbeat, must not starve, or a long busy spell would have the job taken for
    abandoned and run twice.
    """
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


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


class InProcessWorker(
    ClaimedRuns, ReportingWorker, AnnouncingWorker, StartedByClaim, FewerRoundTrips, SimpleWorker
):
    """RQ's simple worker (jobs run in the worker's own process), announcing job changes."""


WORKER_CLASSES: dict[str, type[Worker] | type[SimpleWorker]] = {
    "fork": ForkWorker,
    "simple": InProcessWorker,
}


class UnregisteredJobError(RuntimeError):
    """A job in Redis names a function that is not in the catalogue."""


class OffloadJob(Job):
    """A job whose function comes from the registry, never from importing a stored dotted path.

    Redis is shared with anything that can reach it; RQ would import and call whatever path a
    job names. Resolving through the registry keeps workers to the catalogue, and `run` checks
    the stored input against the job's model before calling it.
    """

    registry: ClassVar[Registry]  # set by build_worker: the catalogue this worker runs

    @property
    def func(self) -> Callable[..., Any]:
        registered = self.registry.by_path(self.func_name) or webhooks.internal.by_path(self.func_name)
        if registered is None or self.instance is not None:
            raise UnregisteredJobError(
                f"{self.func_name!r} is not a registered job; workers run only the catalogue"
            )
        return registered.run

    # RQ imports callbacks by the dotted path a job stores, too: only offload's own are allowed.
    @property
    def success_callback(self) -> Any:
        _check_callback(self._success_callback_name)
        return super().success_callback

    @property
    def failure_callback(self) -> Any:
        _check_callback(self._failure_callback_name)
        return super().failure_callback

    @property
    def stopped_callback(self) -> Any:
        _check_callback(self._stopped_callback_name)
        return super().stopped_callback


def _check_callback(name: str | None) -> None:
    """Refuse, before anything is imported, a callback that is not one of offload's."""
    if name is not None and name not in CALLBACK_HOOKS.values():
        raise UnregisteredJobError(f"{name!r} is not one of offload's callbacks; refusing to call it")


def build_worker(
    connection: Any,
    queues: Sequence[str] = WORKER_QUEUES,
    kind: str = "fork",
    name: str | None = None,
    registry: Registry | None = None,
) -> Worker | SimpleWorker:
    """A worker on `queues` in priority order, with the JSON serializer and the registry's jobs."""
    catalog = registry if registry is not None else load_catalog()
    job_class = cast(type[OffloadJob], type("OffloadJob", (OffloadJob,), {"registry": catalog}))
    return WORKER_CLASSES[kind](
        [SafeQueue(q, connection=connection, serializer=JSONSerializer) for q in queues],
        connection=connection,
        serializer=JSONSerializer,
        queue_class=SafeQueue,
        job_class=job_class,
        name=name,
        # RQ would log each job's arguments, which may hold personal data or secrets; the job's
        # own lines (service/jobreport.py) name it by id and job name instead.
        log_job_description=False,
        **worker_options(),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an offload worker (REDIS_URL from the environment).")
    parser.add_argument("queues", nargs="*", default=list(WORKER_QUEUES), help="queues in priority order")
    parser.add_argument(
        "--kind",
        choices=sorted(WORKER_CLASSES),
        default="fork",
        help="fork: each job in a child process (isolated); simple: in this process (fast)",
    )
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    parser.add_argument("--log-level", help="default: LOG_LEVEL, else INFO")
    args = parser.parse_args(argv)
    unknown = set(args.queues) - set(WORKER_QUEUES)
    if unknown:
        parser.error(f"unknown queues {sorted(unknown)}; queues are {', '.join(WORKER_QUEUES)}")
    settings = load_settings()
    level = (args.log_level or settings.log_level).upper()
    # RQ's own lines (rq.worker, rq.job, rq.scheduler) then go through this handler, in LOG_FORMAT.
    configure_logging(settings.log_format, level)
    # Lower priority for this process and the work horses it forks: the web keeps the CPU it needs
    # when jobs compute on the same machine (a dyno, `make run`); they still get every idle cycle.
    if args.kind == "fork":  # a simple worker is the latency option: its jobs start at once
        os.nice(settings.worker_nice)
        nice_own_autogroup(settings.worker_nice)
    worker = build_worker(
        connect(settings, patient=True), args.queues, args.kind, args.name, load_catalog(settings.jobs_module)
    )
    if isinstance(worker, ForkWorker):  # a simple worker cannot interrupt the job it runs
        worker.grace_seconds = settings.worker_grace_seconds
        worker.idle_priority = settings.job_idle_priority
    # SIGTERM/SIGINT: RQ's warm shutdown; the running job has the grace period to finish, else it
    # goes back to its queue (a second signal: at once). A simple worker waits for it to finish.
    worker.work(burst=args.burst, with_scheduler=True, logging_level=level)
