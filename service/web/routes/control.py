"""Routes that act on one job: cancel (or stop), requeue, delete."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status

from service.schemas import JobView
from service.store.control import cancel, delete, requeue
from service.store.layout import JOB_ID_PATTERN
from service.web.deps import ConnectionDep, RegistryDep

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
async def cancel_job(job_id: JobId, connection: ConnectionDep, registry: RegistryDep) -> JobView:
    """Cancel a job that has not run yet, or stop a running one; 409 once it has ended."""
    return await anyio.to_thread.run_sync(cancel, connection, job_id, registry)


@router.post("/jobs/{job_id}/requeue", response_model=JobView)
async def requeue_job(job_id: JobId, connection: ConnectionDep, registry: RegistryDep) -> JobView:
    """Run a failed, stopped or canceled job again, with the retries it had left."""
    return await anyio.to_thread.run_sync(requeue, connection, job_id, registry)


@router.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_job(job_id: JobId, connection: ConnectionDep, registry: RegistryDep) -> Response:
    """Delete an ended job's record and result; 409 while it may still run (cancel it first)."""
    await anyio.to_thread.run_sync(delete, connection, job_id, registry)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
