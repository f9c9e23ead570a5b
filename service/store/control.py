"""What acts on one job: cancel (or stop), requeue, delete; the API's and the dashboard's one way."""

from __future__ import annotations

from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.registry import BaseRegistry, CanceledJobRegistry, FailedJobRegistry

from service.catalog import Registry
from service.schemas import JobView
from service.serializer import JSON
from service.store.errors import JobStateError
from service.store.layout import NOT_YET_RUN, TERMINAL, index_key
from service.store.rates import unhold
from service.store.views import fetch_job, job_view, status_of, wait_for_end

# A stop command kills the work horse at once; this covers the worker noticing and saving it.
STOP_WAIT_SECONDS = 5.0


def cancel(connection: Redis, job_id: str, registry: Registry) -> JobView:
    """Cancel a job that has not run yet, or stop a running one; refused once it has ended."""
    job = fetch_job(connection, job_id)
    current = status_of(job)
    if current in NOT_YET_RUN:
        unhold(connection, job)  # held by its rate limit: out of its bucket's line first
        job.cancel()
    elif current == "started":
        try:
            send_stop_job_command(connection, job.id, serializer=JSON)
        except InvalidJobOperation:
            raise JobStateError("the job is between two states; try again") from None
        # The fork worker kills the work horse and records the job as stopped; a `simple`
        # worker runs jobs in its own process and cannot stop one: the job runs to its end.
        job = wait_for_end(connection, job, STOP_WAIT_SECONDS)
    else:
        raise JobStateError(f"the job is already {current}; nothing to cancel")
    job.refresh()
    return job_view(job, registry)


def requeue(connection: Redis, job_id: str, registry: Registry) -> JobView:
    """Requeue a failed, stopped or canceled job, with the retries it had left."""
    job = fetch_job(connection, job_id)
    current = status_of(job)
    holder: BaseRegistry
    if current in ("failed", "stopped"):
        holder = FailedJobRegistry(job.origin, connection=connection, serializer=JSON)
    elif current == "canceled":
        holder = CanceledJobRegistry(job.origin, connection=connection, serializer=JSON)
    else:
        raise JobStateError(f"only failed, stopped or canceled jobs can be requeued; this one is {current}")
    _clear_last_run(job)
    try:
        holder.requeue(job)
    except InvalidJobOperation:  # another request requeued or deleted it first
        raise JobStateError("the job changed meanwhile; read it and try again") from None
    job.refresh()
    return job_view(job, registry)


def delete(connection: Redis, job_id: str, registry: Registry) -> None:
    """Delete an ended job's record, result and listing entries; refused while it may still run."""
    job = fetch_job(connection, job_id)
    current = status_of(job)
    if current not in TERMINAL:
        raise JobStateError(f"the job is {current}; cancel it before deleting it")
    registered = registry.by_path(job.func_name)
    with connection.pipeline() as pipe:
        job.delete(pipeline=pipe)
        for key in {index_key(), index_key(queue=job.origin)} | (
            {index_key(name=registered.name)} if registered else set()
        ):
            pipe.zrem(key, job.id)
        pipe.execute()


def _clear_last_run(job: Job) -> None:
    """The last run's progress and error would read as the next run's."""
    for stale in ("progress", "error"):
        job.meta.pop(stale, None)
    job.save_meta()
