"""Routes that list: jobs (filtered, paginated), queues with counts, workers."""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Query
from redis import Redis
from rq import Worker
from rq.worker import BaseWorker

from service.schemas import JobPage, QueueView, WorkerView
from service.serializer import JSON
from service.store.counts import queue_views
from service.store.layout import QUEUES, StatusName
from service.store.listing import Cursor, InvalidCursorError, list_jobs
from service.web.deps import ConnectionDep, RegistryDep
from service.web.errors import InvalidOptionError

router = APIRouter()
MAX_PAGE = 200


@router.get("/jobs", tags=["jobs"], response_model=JobPage)
async def read_jobs(
    connection: ConnectionDep,
    registry: RegistryDep,
    status: Annotated[StatusName | None, Query(description="Only jobs in this status")] = None,
    queue: Annotated[Literal[QUEUES] | None, Query(description="Only jobs of this queue")] = None,  # type: ignore[valid-type]
    name: Annotated[str | None, Query(max_length=64, description="Only jobs of this job name")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most jobs on the page")] = 50,
) -> JobPage:
    """List jobs newest first; a page may hold fewer than `limit`: follow `next_cursor` to its end."""
    try:
        position = Cursor.parse(cursor) if cursor is not None else None
    except InvalidCursorError as exc:
        raise InvalidOptionError("cursor", str(exc)) from None
    if name is not None and registry.get(name) is None:
        raise InvalidOptionError("name", f"no job named {name!r}; known jobs: {', '.join(registry.names())}")
    page = await anyio.to_thread.run_sync(
        lambda: list_jobs(
            connection, registry, limit=limit, status=status, queue=queue, name=name, cursor=position
        )
    )
    return JobPage(jobs=page.jobs, next_cursor=page.next_cursor)


@router.get("/queues", tags=["queues"], response_model=list[QueueView])
async def read_queues(connection: ConnectionDep) -> list[QueueView]:
    """Jobs per status in each queue, and whether it is paused (one round trip)."""
    # The same count /metrics exposes (service/store/counts.py), so the two always agree.
    return await anyio.to_thread.run_sync(queue_views, connection)


@router.get("/workers", tags=["queues"], response_model=list[WorkerView])
async def read_workers(connection: ConnectionDep) -> list[WorkerView]:
    """The workers alive, with their state, queues and the jobs they run now."""
    return await anyio.to_thread.run_sync(_workers, connection)


def _workers(connection: Redis) -> list[WorkerView]:
    return [
        _worker_view(worker)
        for worker in sorted(Worker.all(connection=connection, serializer=JSON), key=lambda w: w.name)
    ]


def _worker_view(worker: BaseWorker) -> WorkerView:
    # RQ's index of the worker's executions: one per running job, whatever the kind.
    running = sorted(execution.job_id for execution in worker.get_current_executions())
    return WorkerView(
        name=worker.name,
        state=str(worker.get_state()),
        queues=worker.queue_names(),
        current_job=running[0] if running else worker.get_current_job_id(),
        current_jobs=running,
        successful_jobs=worker.successful_job_count,
        failed_jobs=worker.failed_job_count,
        hostname=worker.hostname,
        pid=worker.pid,
        started_at=worker.birth_date,
        last_heartbeat=worker.last_heartbeat,
    )
