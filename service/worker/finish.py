"""The end of a successful run in one round trip: RQ's writes, by one script (service/store/end.py).

RQ's `handle_job_success` takes three round trips (WATCH the job's dependents, read them, then the
transaction) and its `handle_execution_ended` one more, for a field the transaction writes again.
The end script makes RQ's transaction's writes behind a guard that the job has no dependents. What
it does not cover goes to RQ's method as before: dependents (the guard fails), a repeat, a rate
limit, a result kept for 0 s (the job deleted at once). tests/unit/test_finish.py holds the writes
equal to RQ's own, key by key.
"""

from __future__ import annotations

from rq.executions import Execution
from rq.job import Job
from rq.worker import BaseWorker

from service.store.end import End, success_end
from service.store.layout import counter_field
from service.worker.report import job_name


def fast_end(worker: BaseWorker, job: Job, execution: Execution | None) -> End | None:
    """The job's successful end as the end script's arguments; None where RQ's own is needed."""
    result_ttl = job.get_result_ttl(worker.default_result_ttl)
    if execution is None or result_ttl == 0 or job.has_rate_limit or (job.repeats_left or 0) > 0:
        return None
    if job.started_at is None or job.ended_at is None:
        return None
    took = job.ended_at - job.started_at
    counter = counter_field(job_name(job), "finished")  # offload's count, as count_event adds it
    return success_end(job, execution, worker.name, counter, result_ttl, took)
