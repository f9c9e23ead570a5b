"""Live events of a job: `GET /jobs/{id}/events` as Server-Sent Events, woken by Redis pub/sub.

A stream subscribes to the job's channel (workers announce starts, progress and ends there, see
`service/catalog.py` and `service/worker/worker.py`), then re-reads the job on each announcement, and at
least every `RECHECK_SECONDS` for the changes nobody announces: a cancel, a job found abandoned.
It sends an event only when the status or the progress changed, and a final one when it ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from rq.job import Job

from service.catalog import Registry
from service.schemas import JobView
from service.store.errors import JobNotFoundError
from service.store.layout import JOB_ID_PATTERN, TERMINAL, events_channel
from service.store.views import fetch_job, job_view
from service.web.deps import ConnectionDep, RegistryDep, SettingsDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job's id")]
# Longest wait on the channel before re-reading the job anyway.
RECHECK_SECONDS = 1.0
# Closing a subscription is shielded from cancellation (a client that left cancels the stream);
# this bounds it if Redis is unreachable by then.
CLOSE_SECONDS = 2.0
# What a job's hash holds that events are about: a change here is worth reading the whole job.
WATCHED_FIELDS = ("status", "meta")

EVENTS_DESCRIPTION = (
    "`status` (the job now, then each status change) and `progress` events, each with the job as "
    "`GET /jobs/{id}` shows it; then `end` with the ended job and the stream closes. A stream open "
    "longer than MAX_STREAM_SECONDS closes with `timeout` (reconnect); `gone` if the job's record "
    "expired; `unavailable` if Redis went away."
)


@dataclass
class Subscription:
    """A stream's start: subscribed to the job's channel, then the job as read after that."""

    job_id: str
    pubsub: PubSub
    fingerprint: list[Any]
    view: JobView


async def subscribe(
    request: Request, job_id: JobId, connection: ConnectionDep, registry: RegistryDep
) -> AsyncIterator[Subscription]:
    """Subscribe and read the job before the stream starts, so an unknown id is a plain 404."""
    async_connection: AsyncRedis = request.app.state.async_connection
    pubsub = async_connection.pubsub()
    try:
        await pubsub.subscribe(events_channel(job_id))
        # Subscribed first, read second: a change in between is announced, not lost. The
        # fingerprint is read before the view for the same reason.
        fingerprint = await _fingerprint(async_connection, job_id)
        view = await _read(connection, job_id, registry)
        yield Subscription(job_id, pubsub, fingerprint, view)
    finally:
        with anyio.move_on_after(CLOSE_SECONDS, shield=True):
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe()
            await pubsub.aclose()


SubscriptionDep = Annotated[Subscription, Depends(subscribe)]


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    response_description=EVENTS_DESCRIPTION,
    responses={404: {"description": "Unknown job id"}, 503: {"description": "Redis down"}},
)
async def stream_job_events(
    request: Request,
    stream: SubscriptionDep,
    connection: ConnectionDep,
    registry: RegistryDep,
    settings: SettingsDep,
) -> AsyncIterator[ServerSentEvent]:
    """Stream a job's status and progress changes as Server-Sent Events until it ends."""
    async_connection: AsyncRedis = request.app.state.async_connection
    job_id, view, fingerprint = stream.job_id, stream.view, stream.fingerprint
    deadline = anyio.current_time() + settings.max_stream_seconds
    try:
        if view.status not in TERMINAL:
            yield ServerSentEvent(event="status", data=view)
        while view.status not in TERMINAL:
            left = deadline - anyio.current_time()
            if left <= 0:
                yield ServerSentEvent(event="timeout", data=view)
                return
            # Any message (or none within the timeout) means: look again. What changed is read
            # from the job itself, so a lost or repeated announcement costs nothing.
            await stream.pubsub.get_message(
                ignore_subscribe_messages=True, timeout=min(RECHECK_SECONDS, left)
            )
            latest = await _fingerprint(async_connection, job_id)
            if latest == fingerprint:
                continue
            fingerprint = latest
            try:
                current = await _read(connection, job_id, registry)
            except JobNotFoundError as exc:
                yield ServerSentEvent(event="gone", data={"detail": exc.detail})
                return
            if current.status != view.status and current.status not in TERMINAL:
                yield ServerSentEvent(event="status", data=current)
            elif current.progress != view.progress and current.status not in TERMINAL:
                yield ServerSentEvent(event="progress", data=current)
            view = current
        yield ServerSentEvent(event="end", data=view)
    except RedisError as exc:
        # The response has started, so no 503: say why the stream ends; a reconnect gets the 503.
        log.warning("Redis unavailable during the events of job %s: %s", job_id, exc)
        yield ServerSentEvent(event="unavailable", data={"detail": f"Redis is unavailable ({exc})"})


async def _fingerprint(async_connection: AsyncRedis, job_id: str) -> list[Any]:
    """The job's status and meta as stored: cheap to read on the event loop, every second."""
    fields: list[Any] = await async_connection.hmget(Job.key_for(job_id), list(WATCHED_FIELDS))
    return fields


async def _read(connection: Redis, job_id: str, registry: Registry) -> JobView:
    """The job as `GET /jobs/{id}` shows it (404 if gone), read on a worker thread.

    Only when its fingerprint changed, so a stream borrows a thread for a moment per change and
    holds none while it waits.
    """
    return await anyio.to_thread.run_sync(lambda: job_view(fetch_job(connection, job_id), registry))
