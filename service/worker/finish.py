"""The end of a successful run in one round trip: RQ's own writes, recorded, behind one guard.

RQ's `handle_job_success` takes three round trips (WATCH the job's dependents, read them, then the
transaction) and its `handle_execution_ended` one more, for a field the transaction writes again.
Most jobs have no dependents, and then RQ's transaction is all there is to write: here RQ's own
pieces of it (the same calls, in the same order, on a recorded pipeline: service/store/atomic.py)
run in one script, guarded by the dependents key not existing. Atomically: a dependent enqueued
meanwhile either exists before the script (the guard fails, RQ's own method runs, with its WATCH)
or sees the job finished (the enqueue's script reads its dependency's status: service/store/write.py).
What the fast end does not cover goes to RQ's method as before: dependents, a repeat, a rate
limit, a result kept for 0 s (the job deleted at once). tests/unit/test_finish.py holds the
writes equal to RQ's own, key by key.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING

from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.worker import BaseWorker

from service.store.atomic import Group, record
from service.store.layout import applied_key

if TYPE_CHECKING:
    from redis.client import Pipeline


def fast_end(worker: BaseWorker, job: Job, execution: Execution | None) -> Group | None:
    """The writes of the job's successful end as one guarded group; None where RQ's own is needed."""
    result_ttl = job.get_result_ttl(worker.default_result_ttl)
    if execution is None or result_ttl == 0 or job.has_rate_limit or (job.repeats_left or 0) > 0:
        return None
    if job.started_at is None or job.ended_at is None:
        return None
    took = job.ended_at - job.started_at
    write = partial(_success_writes, worker, job, execution, result_ttl, took)
    commands, _ = record(worker.connection, write)
    return Group(commands, [(("EXISTS", job.dependents_key), 0)], mark=applied_key("end", execution.id))


def _success_writes(
    worker: BaseWorker, job: Job, execution: Execution, result_ttl: int, took: timedelta, pipe: Pipeline
) -> None:
    """RQ 3.0's `handle_job_success` for a job without dependents, repeat or rate limit, in its order."""
    worker.increment_successful_job_count(pipeline=pipe)
    worker.increment_total_working_time(took, pipe)
    job._handle_success(
        result_ttl,
        pipeline=pipe,
        worker_name=worker.name,
        execution_id=execution.id,
        execution_started_at=execution.created_at,
        execution_ended_at=job.ended_at,
    )
    job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
    job._status = JobStatus.FINISHED
    worker.cleanup_execution(job, pipeline=pipe, execution=execution)
