"""Routes that act on one job (cancel or stop, requeue, delete) or on a queue (pause, resume)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status
from redis import Redis

from service.schemas import JobView, QueueView
from service.store.control import cancel, delete, requeue
from service.store.counts import queue_views
from service.store.layout import JOB_ID_PATTERN
from service.store.pause import pause, resume
from service.web.deps import ConnectionDep, RegistryDep

router = APIRouter(tags=["jobs"])
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]
# Any text: a name that is no queue is a 404 saying which are (not a 422 about a pattern).
QueueName = Annotated[
    str, Path(max_length=64, description="The queue's name: high, webhooks, default or low")
]


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


@router.post("/queues/{name}/pause", tags=["queues"], response_model=QueueView)
async def pause_queue(name: QueueName, connection: ConnectionDep) -> QueueView:
    """Pause a queue: it still accepts jobs, and no worker takes one until it is resumed."""
    return await anyio.to_thread.run_sync(_act_on_queue, pause, connection, name)


@router.post("/queues/{name}/resume", tags=["queues"], response_model=QueueView)
async def resume_queue(name: QueueName, connection: ConnectionDep) -> QueueView:
    """Resume a paused queue: workers take its jobs again, woken at once."""
    return await anyio.to_thread.run_sync(_act_on_queue, resume, connection, name)


def _act_on_queue(act: Callable[[Redis, str], bool], connection: Redis, name: str) -> QueueView:
    act(connection, name)  # unknown names are refused here, before any write
    return next(view for view in queue_views(connection) if view.name == name)
