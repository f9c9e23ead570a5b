"""A forking worker's graceful stop: the running job gets a grace period, then goes back to its queue.

On the first SIGTERM or SIGINT (a dyno restart, Ctrl-C) RQ's warm shutdown lets the running job
finish. Heroku SIGKILLs the dyno 30 s later, and a job cut off that way would only be found
abandoned later, costing it one of its retries. So a grace timer starts with the warm shutdown:
a job still running when it ends has its work horse killed, and is put back at the front of its
queue exactly as it was before this run (status `queued`, `retries_left`, `started_at`, meta), out
of the started registry, with no failed result, failed registry entry, callback or webhook. The
worker then exits; the next worker runs the job again.

A second signal does the same at once, where RQ's cold shutdown would exit and leave the job to be
found abandoned; a third one is RQ's cold shutdown. SIGKILL gives no chance to do anything: the job
is found abandoned by RQ's registry cleanup (service/worker/recovery.py).

The grace timer is a thread, as RQ's own stop command kills a horse from its pubsub thread: the
main thread sits in RQ's `os.wait4` on the horse, which Python resumes after a signal handler
returns (PEP 475) until the horse exits or RQ's monitoring interval passes; the horse's death is
what wakes it on time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import BaseWorker

from service.logs import fields
from service.store.enqueue import count_event
from service.store.layout import events_channel
from service.tracing import REQUEST_ID_META
from service.worker.report import job_name
from service.worker.trace import end_run

log = logging.getLogger("offload.job")

DEFAULT_GRACE_SECONDS = 25.0  # under Heroku's 30 s, leaving time to requeue and exit (WORKER_GRACE_SECONDS)
# What a job's record says about its last run; a run cut short for a stop must leave no trace in it.
RUN_FIELDS = ("started_at", "ended_at", "worker_name", "last_heartbeat")
# The `offload_job_runs_total` outcome of a run cut short by a stop and requeued (service/web/metrics.py).
INTERRUPTED = "interrupted"


@dataclass
class Run:
    """The job a work horse is running, as the worker saw it before the run began."""

    job_id: str
    horse_pid: int
    before: dict[str, Any]
    interrupted: str | None = None  # why the worker killed the horse, once it has
    started: datetime = field(default_factory=now)


class GracefulStop:
    """A forking worker's warm shutdown: the running job gets `grace_seconds`, then is requeued.

    The worker (service/worker/worker.py) calls it from its overrides of RQ's members: it owns no
    RQ member itself. A simple worker has one too, idle: it has no horse to interrupt.
    """

    def __init__(self, worker: BaseWorker) -> None:
        self.worker = worker
        self._run: Run | None = None
        self._grace_timer: threading.Timer | None = None
        self._grace_over = False
        self._before: dict[str, Any] = {}

    @property
    def connection(self) -> Redis:
        return self.worker.connection

    def remember(self, job: Job) -> None:
        """Before the claim marks the job started: the job as it was before this run."""
        self._before = {name: getattr(job, name) for name in RUN_FIELDS}

    def start_grace(self, grace_seconds: float) -> None:
        """The first stop signal: the running job has `grace_seconds` to finish."""
        if self._grace_timer is None:
            run = self._run
            if run is not None:
                log.info(
                    "the running job has %g s to finish, else it goes back to its queue",
                    grace_seconds,
                    extra=fields(job_id=run.job_id, worker=self.worker.name),
                )
            self._grace_timer = threading.Timer(grace_seconds, self._end_grace)
            self._grace_timer.daemon = True
            self._grace_timer.start()

    def force_stop(self, first_signal_at: datetime | None) -> bool:
        """A second signal: requeue the running job now; False if it is RQ's to handle (a third
        signal, or none running)."""
        # RQ ignores a signal within 1 s of the first: Ctrl-C under honcho sends SIGINT and SIGTERM.
        duplicate = first_signal_at is not None and now() - first_signal_at < timedelta(seconds=1)
        return not duplicate and self._interrupt("cold shutdown")

    def begin(self, job: Job, horse_pid: int) -> None:
        """A work horse runs the job now."""
        self._run = Run(job.id, horse_pid, self._before)
        if self._grace_over:  # the stop came while this horse was being forked
            self._interrupt("grace period over")

    def end(self) -> None:
        self._run = None

    def takes_failure(
        self, job: Job, queue: Queue, execution: Execution | None, stopped_job_id: str | None
    ) -> bool:
        """Whether this failure is a run the worker itself cut short (then requeued here), not the job's."""
        run = self._run
        ours = run is not None and run.interrupted is not None and run.job_id == job.id
        # A stop asked for by a user (RQ's stop command) wins: the job is then `stopped`, as RQ says.
        if run is None or not ours or execution is None or stopped_job_id == job.id:
            return False
        if self.connection.exists(execution.key):
            self._requeue(job, queue, execution, run)
        # else the horse closed the run itself (a retry queued) just before it was killed
        return True

    def cancel(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()

    def _end_grace(self) -> None:
        """The grace timer's thread: the grace period is over."""
        self._grace_over = True
        self._interrupt("grace period over")

    def _interrupt(self, reason: str) -> bool:
        """Kill the running job's work horse, marking the run for a requeue; False if none runs."""
        run = self._run
        if run is None or run.interrupted is not None:
            return False
        run.interrupted = reason
        # The horse leads a process group of its own (RQ's fork_work_horse); its pid, read when
        # the run began, not RQ's kill_horse: `horse_pid` turns 0 once the horse is reaped, and
        # killpg(getpgid(0)) would be this worker's own group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.horse_pid, signal.SIGKILL)
        return True

    def _requeue(self, job: Job, queue: Queue, execution: Execution, run: Run) -> None:
        requeue(self.worker, job, queue, execution, run.before, run.interrupted, run.started)


def requeue(
    worker: BaseWorker,
    job: Job,
    queue: Queue,
    execution: Execution,
    before: dict[str, Any],
    reason: str | None,
    started: datetime,
) -> None:
    """Put a run's job back at the front of its queue as it was `before` the run, in one transaction."""
    duration = (now() - started).total_seconds()
    name = job_name(job)
    for attribute, value in before.items():
        setattr(job, attribute, value)
    try:
        with worker.connection.pipeline() as pipe:
            worker.cleanup_execution(job, pipeline=pipe, execution=execution)  # out of "started"
            # What RQ's Queue does to enqueue a job, at the front, with its retries unspent.
            job.set_status(JobStatus.QUEUED, pipeline=pipe)
            job.save(pipeline=pipe)  # the worker's copy: meta and progress from before the run
            if not job.meta:  # RQ saves no meta when it is empty: drop the run's own
                pipe.hdel(job.key, "meta")
            job.cleanup(ttl=job.ttl, pipeline=pipe)  # the run made the record permanent
            queue.push_job_id(job.id, pipeline=pipe, at_front=True)
            count_event(pipe, name, INTERRUPTED)
            pipe.publish(events_channel(job.id), "requeued")
            pipe.execute()
    except RedisError:
        log.exception(
            "could not requeue job %s; RQ will find it abandoned", job.id, extra=fields(job_id=job.id)
        )
        return
    # RQ has just logged the cut-off run as a failure; this says what became of the job.
    details = {"job_id": job.id, "job": name, "queue": queue.name, "worker": worker.name}
    if (request_id := job.meta.get(REQUEST_ID_META)) is not None:
        details["request_id"] = request_id
    log.warning("job requeued", extra=fields(**details, reason=reason, duration_ms=round(duration * 1000, 1)))
    try:
        end_run(job, name, INTERRUPTED, started=started)
    except Exception:  # a report must never cost a job its requeue
        log.warning("could not end the span of job %s's run", job.id, exc_info=True)
