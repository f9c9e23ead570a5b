"""The worker: one class for what every offload worker changes of RQ's, one per way of running a job.

`OffloadWorker` overrides each RQ member it changes once, and hands the work to one module per
concern: the claim and its recovery (recovery.py), the graceful stop (shutdown.py), the reports
(report.py). `ForkWorker` adds what only a forking worker does (its work horse); `InProcessWorker`
is RQ's SimpleWorker with offload's bookkeeping. tests/unit/test_rq_pins.py pins every member
overridden here to RQ's signature.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.executions import Execution
from rq.job import Job
from rq.utils import now
from rq.worker import BaseWorker, WorkerStatus

from service.store.end import End, end_runs
from service.store.enqueue import count_event
from service.store.layout import events_channel
from service.store.wake import wake
from service.worker.finish import fast_end
from service.worker.recovery import (
    CLAIM_LOST,
    ClaimLostError,
    claim,
    ended_before_kill,
    expire_stale,
    heartbeat_ttl,
)
from service.worker.report import (
    RETRY_AFTER,
    failure_outcome,
    job_name,
    quiet_rq_job_lines,
    report_end,
    report_start,
)
from service.worker.shutdown import DEFAULT_GRACE_SECONDS, GracefulStop

if TYPE_CHECKING:
    from redis.client import Pipeline


class OffloadWorker(BaseWorker):
    """What every offload worker changes of RQ's: the claim, reports and announcements, fewer round trips.

    Each state change of a job is announced on its events channel once RQ has saved it, so
    `GET /jobs/{id}/events` streams wake instead of polling.
    """

    log_result_lifespan = False  # RQ's line per job on how long its result is kept: `job ended` is the line
    _plain_heartbeat_at = -math.inf  # when the last heartbeat was sent, if it was a plain one
    _suspension_checked_at = -math.inf  # when `rq suspend` was last looked for (monotonic)
    max_memory_mb: float | None = None  # WORKER_MAX_MEMORY_MB, for a pool's children (pool.py)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_rq_job_lines()
        self.graceful = GracefulStop(self)  # idle unless a ForkWorker's warm shutdown starts it
        # The job whose success RQ is saving, per thread: a concurrent worker saves several at once.
        self._saving = threading.local()
        # Its takes look for a stop asked of this worker (SafeQueue.take; `_shutdown`).
        worker = self
        self.queue_class = type(  # type: ignore[assignment]
            self.queue_class.__name__,
            (self.queue_class,),
            {"stop_requested": staticmethod(lambda: worker._stop_requested)},
        )

    def execute_job(self, job: Job, queue: Queue) -> None:
        if expire_stale(self, job):  # past its ttl: canceled unrun, on to the next job
            return
        try:
            super().execute_job(job, queue)
        except ClaimLostError:
            self.log.warning(CLAIM_LOST, job.id)
            if not self.executions:  # a concurrent worker may still run others
                self.set_state(WorkerStatus.IDLE)
        self._stop_if_too_big()

    def _stop_if_too_big(self) -> None:
        """Past `max_memory_mb` after a job: stop before taking another, as a warm shutdown would (a pool
        starts a fresh child in its place, service/worker/pool.py)."""
        if self.max_memory_mb is None:
            return
        resident = resident_mb()
        if resident > self.max_memory_mb:
            self.log.info(
                "worker %s: %.0f MB resident, over %g MB: stopping", self.name, resident, self.max_memory_mb
            )
            self._stop_requested = True  # RQ's work loop ends before its next dequeue

    def prepare_execution(self, job: Job) -> Execution:
        self.graceful.remember(job)  # as it was before the claim marks it started
        execution = claim(self, job)
        self.executions[execution.id] = execution
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        # RQ's start of a run, less its writes: the claim made them, a round trip earlier.
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")  # type: ignore[no-untyped-call]
        report_start(self, job)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        if sys.exc_info()[0] is not None:  # a failed run: RQ's failure handling reads it as it was
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        # RQ writes the job's last heartbeat here, a round trip of its own: the end's save writes
        # it again (RQ's job.save in handle_job_success), so it only goes with that.
        job.ended_at = job.last_heartbeat = now()

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: Any, execution: Execution | None
    ) -> None:
        end = fast_end(self, job, execution)  # RQ's writes in one round trip (finish.py)
        if end is not None and self.commit(end):
            self.executions.pop(execution.id, None)  # type: ignore[union-attr]  # fast_end saw one
        else:
            self._saving.job = job
            try:
                super().handle_job_success(job, queue, started_job_registry, execution)  # type: ignore[arg-type]
            finally:
                self._saving.job = None
        self._wake_for_slot(job)
        report_end(self, job, "finished", counted=True)

    def commit(self, end: End) -> bool:
        """Write one run's end (service/store/end.py); whether it was written (no dependents)."""
        return end_runs(self.connection, [end])[0]

    def increment_successful_job_count(self, pipeline: Pipeline | None = None) -> None:
        # RQ calls this inside the transaction that saves the result: the count and the announcement
        # ride along, no round trip of their own, visible at the same EXEC.
        super().increment_successful_job_count(pipeline)
        job: Job | None = getattr(self._saving, "job", None)
        if job is not None and pipeline is not None:
            pipeline.publish(events_channel(job.id), "succeeded")
            count_event(pipeline, job_name(job), "finished")

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        # A run this worker cut short to stop (requeued as it was), or one the horse ended itself
        # before it was killed: neither is a failure of the job.
        if self.graceful.takes_failure(job, queue, execution, self._stopped_job_id):
            return
        if ended_before_kill(self.connection, exc_string, execution):
            self.log.warning("job %s: work horse killed after it ended the run; nothing more to do", job.id)
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        self._announce(job, "failed")  # now failed, stopped, or due for a retry
        self._wake_for_slot(job)
        report_end(self, job, failure_outcome(job))

    def handle_job_retry(self, job: Job, *args: Any, **kwargs: Any) -> None:
        # A job returns RQ's Retry only through `retry_after` (service/flow.py): run again later,
        # its retries unspent.
        super().handle_job_retry(job, *args, **kwargs)
        self._announce(job, "retried")
        self._wake_for_slot(job)
        failed = job.get_status(refresh=False) == "failed"  # asked once too often (RETRY_AFTER_LIMIT)
        report_end(self, job, "failed" if failed else RETRY_AFTER)

    def _wake_for_slot(self, job: Job) -> None:
        """RQ's end of a capped job frees its slot and queues the next job of its key (rq/rate_limit.py),
        with no wake-up: an idle worker would find it only at its next look (WAKE_POLL_SECONDS)."""
        if not job.has_rate_limit:
            return
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                wake(pipe, job.origin)
                pipe.execute()
        except RedisError as exc:  # idle workers look again within WAKE_POLL_SECONDS anyway
            self.log.warning("could not wake workers for job %s's slot: %s", job.id, exc)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's heartbeat in one round trip, and a plain one (RQ's default length) not at all within a
        second of the last, if that was plain too: it would only push the worker's expiry, 90 s away,
        a little further. A heartbeat with a length of its own (a run's) always goes."""
        if timeout is not None:
            self._plain_heartbeat_at = -math.inf
        elif pipeline is None and time.monotonic() - self._plain_heartbeat_at < 1:
            return
        else:
            self._plain_heartbeat_at = time.monotonic()
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with self.connection.pipeline(transaction=False) as batch:
            super().heartbeat(timeout, batch)
            batch.execute()

    def _shutdown(self) -> None:
        """RQ's, less its raise: an idle worker's stop is raised by its own main thread as it next looks
        for a job or waits for one (SafeQueue.take, WAKE_POLL_SECONDS at most), not by the signal
        handler wherever the main thread is. Raised inside a Redis command, it left a pooled
        connection whose reply was still to come, read by the next command in its place (the
        teardown's, or a concurrent worker's running jobs'), or crashed hiredis as it packed one."""
        self._stop_requested = True
        if self.get_state() == WorkerStatus.BUSY:
            self.set_shutdown_requested_date()  # type: ignore[no-untyped-call]
            if self.scheduler:
                self.stop_scheduler()  # type: ignore[no-untyped-call]

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's, at most once a second (RQ asks Redis before every job): `rq suspend` stops this
        worker taking jobs within a second instead of at once."""
        if time.monotonic() - self._suspension_checked_at < 1:
            return
        super().check_for_suspension(burst)
        self._suspension_checked_at = time.monotonic()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == self.get_state():  # a state already written is not written again
            return
        super().set_state(state, pipeline)

    def _announce(self, job: Job, change: str) -> None:
        try:
            self.connection.publish(events_channel(job.id), change)
        except RedisError as exc:
            # Not worth failing a job over: streams re-read the job every second regardless.
            self.log.warning("could not announce job %s %s: %s", job.id, change, exc)


class ForkWorker(OffloadWorker, Worker):
    """RQ's forking worker, with a work horse that lets its worker decide when to stop.

    Heroku and honcho send SIGTERM to every process of a dyno, the work horse included; RQ's
    horse would die at once. Here it ignores SIGTERM, so the worker's warm shutdown lets the
    running job finish within its grace period, else puts it back on its queue (shutdown.py);
    a second signal does that at once, and SIGKILL still ends the horse with its worker.
    """

    grace_seconds: float = DEFAULT_GRACE_SECONDS  # WORKER_GRACE_SECONDS (main)
    idle_priority: bool = True  # JOB_IDLE_PRIORITY (main)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return heartbeat_ttl(self.job_monitoring_interval, job, working_time)

    def handle_warm_shutdown_request(self) -> None:
        super().handle_warm_shutdown_request()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
        self.graceful.start_grace(self.grace_seconds)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """A second signal: requeue the running job now; a third (or none running): RQ's cold stop."""
        if self.graceful.force_stop(self._shutdown_requested_date):
            return  # the horse dies, the job is requeued, and the worker exits as in a warm shutdown
        super().request_force_stop(signum, frame)

    def monitor_work_horse(self, job: Job, queue: Queue, execution: Execution) -> None:
        self.graceful.begin(job, self.horse_pid)
        try:
            super().monitor_work_horse(job, queue, execution)
        finally:
            self.graceful.end()

    def teardown(self) -> None:
        self.graceful.cancel()
        super().teardown()  # type: ignore[no-untyped-call]  # rq leaves it unannotated

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

    def setup_work_horse_signals(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _die_with_parent()
        if self.idle_priority:
            _run_when_idle()


class InProcessWorker(OffloadWorker, SimpleWorker):
    """RQ's simple worker (jobs run in the worker's own process), with offload's bookkeeping."""


WORKER_CLASSES: dict[str, type[OffloadWorker]] = {"fork": ForkWorker, "simple": InProcessWorker}


def resident_mb() -> float:
    """This process's resident memory now, in MB (Linux's /proc; elsewhere its peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
        return peak / (1 << 20 if sys.platform == "darwin" else 1 << 10)
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


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
