"""Runs that survive a kill: the claim that starts one, and how soon a cut-off job runs again.

A forking worker refreshes its running job's heartbeat every JOB_MONITORING_INTERVAL seconds; the
job's entry in RQ's started registry lapses HEARTBEAT_MARGIN seconds after the last refresh. Every
MAINTENANCE_INTERVAL seconds one worker sweeps the registries: a lapsed job is abandoned, retried
if it has retries left (after its backoff interval), else failed with AbandonedJobError. An idle
worker sweeps when its wait for work times out, every WORKER_TTL - 15 = 15 s; so a sweep comes at
most two intervals after the entry lapsed, and a job whose worker was SIGKILLed is found at most
5 + 15 + 2 x 15 = 50 s after the kill (RQ's defaults: 30 s heartbeats, a 60 s margin and 10-minute
sweeps, about 11 minutes); 60 s more if another worker was killed while sweeping that queue
(service/store/queues.py MAINTENANCE_LOCK_SECONDS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rq.executions import Execution
from rq.job import Job
from rq.utils import as_text, parse_composite_key
from rq.worker import BaseWorker, WorkerStatus

from service.store.atomic import record
from service.store.claim import Claim, claim_runs
from service.store.expiry import expire, expired, ttl_of
from service.store.layout import (
    intermediate_key,
    job_key,
    started_key,
    worker_runs_key,
)
from service.worker.report import job_name

if TYPE_CHECKING:
    from redis import Redis
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


def heartbeat_ttl(interval: float, job: Job, working_time: float = 0.0) -> int:
    """A forking worker's heartbeat: it lapses HEARTBEAT_MARGIN seconds after it is due, not RQ's fixed 60."""
    if job.timeout and job.timeout > 0:
        interval = min(interval, max(job.timeout - working_time, 0))
    return int(interval) + HEARTBEAT_MARGIN


CLAIM_LOST = "job %s: canceled, deleted or given back to its queue before this worker claimed it"


class ClaimLostError(Exception):
    """The job was canceled, deleted or given back to its queue by a sweep before this worker claimed
    it: not this worker's to run."""


def expire_stale(worker: BaseWorker, job: Job) -> bool:
    """Whether the job just taken is past its ttl (service/store/expiry.py): if so it is canceled,
    unrun and off the intermediate list, and the worker goes on to its next job without claiming it."""
    if not expired(job):
        return False
    if expire(worker.connection, job, job_name(job), intermediate_key(job.origin)):
        worker.log.info("job %s: not started within its ttl of %s s; canceled unrun", job.id, ttl_of(job))
    return True


def claim(worker: BaseWorker, job: Job) -> Execution:
    """Claim the job `worker` took, atomically: its run recorded, the job marked started by this
    worker (what RQ's prepare_job_execution writes), its id off the intermediate list.

    RQ records a run in the worker, then marks the job started in the work horse: a worker killed in
    between left a run whose job still read `queued`, which RQ's sweep dropped, and the job was lost.
    Raises ClaimLostError when it was canceled or deleted meanwhile, or a sweep gave it back to its
    queue first (this worker stalled).
    """
    execution = claim_many(worker, [job])[0]
    if execution is None:
        raise ClaimLostError(job.id)
    return execution


def claim_many(worker: BaseWorker, jobs: Sequence[Job]) -> list[Execution | None]:
    """Claim jobs `worker` took, in one round trip (service/store/claim.py); for each its run, or None
    where the claim was lost (nothing of it written): canceled or deleted since it was taken (a sweep
    of the intermediate list then drops its id), or given back to its queue by a sweep."""
    claims = [Claim(job, worker.get_heartbeat_ttl(job)) for job in jobs]
    # The worker's own writes once, whatever became of each claim: a heartbeat as long as the
    # longest run's or RQ's plain one, whichever is longer, and busy (undone by the caller if no
    # claim held). A plain one spares the plain heartbeat RQ's loop sends right after the job.
    ttl = max(claim.ttl for claim in claims)
    longest = ttl if ttl > worker.worker_ttl + 60 else None  # None: RQ's plain length
    commands, _ = record(worker.connection, lambda pipe: _worker_writes(worker, longest, pipe))
    return claim_runs(worker.connection, worker.name, claims, commands)


def _worker_writes(worker: BaseWorker, ttl: int | None, pipe: Pipeline) -> None:
    """What a claim writes of the worker: the heartbeat that covers its runs, and busy."""
    worker.heartbeat(ttl, pipeline=pipe)
    worker.set_state(WorkerStatus.BUSY, pipeline=pipe)


def ended_before_kill(connection: Redis, exc_string: str, execution: Execution | None) -> bool:
    """Whether a killed work horse had recorded its run's end (a retry queued, a failure saved).

    Its worker would fail the job once more, spending a retry or ending a job queued again: the job
    ran, or ended, twice. The horse deletes its execution as it records the end; its absence tells.
    """
    return (
        execution is not None
        and exc_string.startswith("Work-horse terminated unexpectedly")
        and not connection.exists(execution.key)
    )


def lapse_runs(connection: Redis, worker_name: str) -> list[tuple[str, str]]:
    """Make every run of a worker known to be dead lapse now; returns them as (queue, registry entry).

    An in-process worker's run is only due to lapse at its job's timeout plus a minute (RQ's
    SimpleWorker does not heartbeat while a job runs), so a pool child killed mid-job would leave its
    job for that long. The pool saw the child die: nothing runs those entries any more, and the next
    sweep treats them as any abandoned job (retried while retries remain, else failed). Only this
    worker's own entries (job id and run id) are touched, and only if still there (ZADD XX): a run
    a sweep has already recovered and another worker has claimed since is a different entry.
    """
    index = worker_runs_key(worker_name)
    lapsed: list[tuple[str, str]] = []
    for member in connection.smembers(index):
        entry = as_text(member)
        job_id, _ = parse_composite_key(entry)
        origin = connection.hget(job_key(job_id), "origin")
        if origin is None:  # the job is gone: nothing to recover
            continue
        queue = as_text(origin)
        if connection.zadd(started_key(queue), {entry: 0}, xx=True, ch=True):
            lapsed.append((queue, entry))
    connection.delete(index)
    return lapsed
