"""How soon a job cut off by a killed worker runs again: heartbeats and maintenance sweeps.

A forking worker refreshes its running job's heartbeat every JOB_MONITORING_INTERVAL seconds; the
job's entry in RQ's started registry lapses HEARTBEAT_MARGIN seconds after the last refresh. Every
MAINTENANCE_INTERVAL seconds one worker sweeps the registries: a lapsed job is abandoned, retried
if it has retries left (after its backoff interval), else failed with AbandonedJobError. An idle
worker sweeps when its wait for work times out, every WORKER_TTL - 15 = 15 s; so a sweep comes at
most two intervals after the entry lapsed, and a job whose worker was SIGKILLed is found at most
5 + 15 + 2 x 15 = 50 s after the kill (RQ's defaults: 30 s heartbeats, a 60 s margin and 10-minute
sweeps, about 11 minutes).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rq import Queue
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.worker import BaseWorker, WorkerStatus

from service.store.layout import events_channel

if TYPE_CHECKING:
    from redis.client import Pipeline

JOB_MONITORING_INTERVAL = 5
HEARTBEAT_MARGIN = 15
MAINTENANCE_INTERVAL = 15
# A killed worker drops out of GET /workers and `rq info` this long after its last heartbeat; RQ
# waits for work WORKER_TTL - 15 seconds at a time, and sweeps only between two waits.
WORKER_TTL = 30
ABANDON_BOUND = JOB_MONITORING_INTERVAL + HEARTBEAT_MARGIN + 2 * MAINTENANCE_INTERVAL


def worker_options() -> dict[str, Any]:
    """The RQ worker arguments that set those intervals."""
    return {
        "job_monitoring_interval": JOB_MONITORING_INTERVAL,
        "maintenance_interval": MAINTENANCE_INTERVAL,
        "worker_ttl": WORKER_TTL,
    }


class PromptRecovery(BaseWorker):
    """A heartbeat that lapses HEARTBEAT_MARGIN seconds after it is due, not RQ's fixed 60."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(interval, max(job.timeout - working_time, 0))
        return int(interval) + HEARTBEAT_MARGIN


class ClaimLostError(Exception):
    """A sweep gave the job back to its queue before this worker claimed it: not this worker's to run."""


# KEYS: queue list, job hash. ARGV: job id. Undoes a lost claim's `started`, unless another worker
# has claimed the job (taking it off the queue) since.
_UNDO_STARTED = """
if redis.call('LPOS', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[2], 'status', 'queued')
end
return 0
"""


class ClaimedRuns(BaseWorker):
    """Each run claimed in one transaction, and a killed horse's run ended once.

    RQ records a run (its execution in the started registry) in the worker, then marks the job
    started in the work horse. A worker killed in between left a run whose job still read
    `queued`, which RQ's sweep dropped: the job was lost. Here the run, the `started` status and
    the job's removal from its intermediate list (service/dequeue.py) are one transaction.

    A work horse that recorded its run's end (a retry queued, a failure saved) and was killed
    before it exited had its job failed once more by its worker, spending a retry or ending a job
    that was queued again: the job ran, or ended, twice. The worker now leaves such a run alone.
    """

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except ClaimLostError:
            self.log.warning("job %s: given back to its queue before this worker claimed it", job.id)
            self.set_state(WorkerStatus.IDLE)

    def prepare_execution(self, job: Job) -> Execution:
        queue_key = Queue.redis_queue_namespace_prefix + job.origin
        with self.connection.pipeline() as pipe:
            pipe.lrem(IntermediateQueue.get_intermediate_queue_key(queue_key), 1, job.id)
            ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            # What RQ's prepare_job_execution writes (see StartedByClaim): started, by this worker.
            self.heartbeat(ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            pipe.publish(events_channel(job.id), "started")  # for GET /jobs/{id}/events
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            claimed = pipe.execute()[0]
            if not claimed:  # a sweep took it back meanwhile (this worker stalled): undo the run
                execution.delete(job=job, pipeline=pipe)
                pipe.eval(_UNDO_STARTED, 2, queue_key, job.key, job.id)
                pipe.execute()
                raise ClaimLostError(job.id)
        self.executions[execution.id] = execution
        return execution

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        if (
            execution is not None
            and exc_string.startswith("Work-horse terminated unexpectedly")
            and not self.connection.exists(execution.key)
        ):
            # The horse deleted its execution as it recorded the run's end, then was killed.
            self.log.warning("job %s: work horse killed after it ended the run; nothing more to do", job.id)
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)


class StartedByClaim(BaseWorker):
    """RQ's start of a run, less its writes: the claim (ClaimedRuns) made them, a round trip earlier.

    Comes last among the mixins, so theirs (the `job started` log line) still run.
    """

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")  # type: ignore[no-untyped-call]


class FewerRoundTrips(BaseWorker):
    """RQ's worker bookkeeping without its repeats: a job used to cost five heartbeats of three
    round trips each, and its worker state written twice over.

    A heartbeat goes out in one round trip, and a plain one (RQ's default length) not at all
    within a second of the last heartbeat, if that one was plain too: it would only push the
    worker's expiry, 90 s away, a little further. A heartbeat with a length of its own (a run's,
    shorter) always goes, and the next plain one after it too. A state already written is not
    written again.
    """

    _plain_heartbeat_at = -math.inf  # when the last heartbeat was sent, if it was a plain one

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
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

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)
