"""Routes that act on one job: cancel (or stop), requeue, delete."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status
from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation
from rq.registry import BaseRegistry, CanceledJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer

from service.catalog import Registry
from service.schemas import JobView
from service.store.layout import JOB_ID_PATTERN, NOT_YET_RUN, TERMINAL, index_key
from service.store.views import fetch_job, job_view, status_of, wait_for_end
from service.web.deps import ConnectionDep, RegistryDep
from service.web.errors import ConflictError

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]
# A stop command kills the work horse at once; this covers the worker noticing and saving it.
STOP_WAIT_SECONDS = 5.0


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
async def cancel_job(job_id: JobId, connection: ConnectionDep, registry: RegistryDep) -> JobView:
    """Cancel a job that has not run yet, or stop a running one; 409 once it has ended."""
    return await anyio.to_thread.run_sync(_cancel, connection, job_id, registry)


def _cancel(connection: Redis, job_id: str, registry: Registry) -> JobView:
    job = fetch_job(connection, job_id)
    current = status_of(job)
    if current in NOT_YET_RUN:
        job.cancel()
    elif current == "started":
        try:
            send_stop_job_command(connection, job.id, serializer=JSONSerializer)
        except InvalidJobOperation:
            raise ConflictError("the job is between two states; try again") from None
        # The fork worker kills the work horse and records the job as stopped; a `simple`
        # worker runs jobs in its own process and cannot stop one: the job runs to its end.
        job = wait_for_end(connection, job, STOP_WAIT_SECONDS)
    else:
        raise ConflictError(f"the job is already {current}; nothing to cancel")
    job.refresh()
    return job_view(job, registry)


@router.post("/jobs/{job_id}/requeue", response_model=JobView)
async def requeue_job(job_id: JobId, connection: ConnectionDep, registry: RegistryDep) -> JobView:
    """Run a failed, stopped or canceled job again, with the retries it had left."""
    return await anyio.to_thread.run_sync(requeue, connection, job_id, registry)


def requeue(connection: Redis, job_id: str, registry: Registry) -> JobView:
    """Requeue a failed, stopped or canceled job: the API's and the dashboard's one way."""
    job = fetch_job(connection, job_id)
    current = status_of(job)
    holder: BaseRegistry
    if current in ("failed", "stopped"):
        holder = FailedJobRegistry(job.origin, connection=connection, serializer=JSONSerializer)
    elif current == "canceled":
        holder = CanceledJobRegistry(job.origin, connection=connection, serializer=JSONSerializer)
    else:
        raise ConflictError(f"only failed, stopped or canceled jobs can be requeued; this one is {current}")
    # The last run's progress and error would read as this run's.
    for stale in ("progress", "error"):
        job.meta.pop(stale, None)
    job.save_meta()
    try:
        holder.requeue(job)
    except InvalidJobOperation:  # another request requeued or deleted it first
        raise ConflictError("the job changed meanwhile; read it and try again") from None
    job.refresh()
    return job_view(job, registry)


@router.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_job(job_id: JobId, connection: ConnectionDep, registry: RegistryDep) -> Response:
    """Delete an ended job's record and result; 409 while it may still run (cancel it first)."""
    await anyio.to_thread.run_sync(_delete, connection, job_id, registry)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _delete(connection: Redis, job_id: str, registry: Registry) -> None:
    job = fetch_job(connection, job_id)
    current = status_of(job)
    if current not in TERMINAL:
        raise ConflictError(f"the job is {current}; cancel it before deleting it")
    registered = registry.by_path(job.func_name)
    with connection.pipeline() as pipe:
        job.delete(pipeline=pipe)
        for key in {index_key(), index_key(queue=job.origin)} | (
            {index_key(name=registered.name)} if registered else set()
        ):
            pipe.zrem(key, job.id)
        pipe.execute()
