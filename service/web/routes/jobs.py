"""Routes that enqueue: one operation per registered job, single and batch, and reading a job."""

# No `from __future__ import annotations` here: the enqueue routes are built at runtime and
# FastAPI reads their annotations as live objects.

import inspect
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, status
from pydantic import BaseModel, HttpUrl
from redis import Redis

from service.catalog import RegisteredJob, Registry
from service.schemas import JobView
from service.settings import Settings
from service.store.enqueue import Enqueued, enqueue_async
from service.store.layout import JOB_ID_PATTERN, QUEUES, TERMINAL, is_job_id
from service.store.options import EnqueueOptions, Idempotency
from service.store.views import fetch_job, fetch_jobs, job_view, job_views, new_job_view, wait_for_end
from service.web.auth import may_enqueue_job, require
from service.web.deps import ConnectionDep, RegistryDep, SettingsDep
from service.web.errors import InvalidOptionError, TooLargeError, UnknownJobNameError
from service.web.routes.duplicates import batch_duplicate_responses, duplicate_responses, mark_duplicates
from service.web.routes.enqueue_route import enqueue_route

JOB_ID = Path(pattern=JOB_ID_PATTERN, description="The id returned by the enqueue")
QueueName = Literal[QUEUES]  # type: ignore[valid-type]
# A client's clock and the network may put a near `at` slightly in the past: run it now.
PAST_GRACE = timedelta(seconds=5)
LONGEST_DELAY = timedelta(days=365)
MAX_DEPENDENCIES = 100
TAGS: list[str | Enum] = ["jobs"]


async def enqueue_options(
    queue: Annotated[QueueName | None, Query(description="Queue to use instead of the job's")] = None,
    timeout: Annotated[
        int | None, Query(ge=1, le=7 * 24 * 3600, description="Seconds a run may take")
    ] = None,
    retries: Annotated[
        int | None, Query(ge=0, le=25, description="Retries after a failed run, with the job's backoff")
    ] = None,
    result_ttl: Annotated[
        int | None, Query(ge=1, le=90 * 24 * 3600, description="Seconds the result is kept")
    ] = None,
    delay: Annotated[
        float | None, Query(ge=0, le=LONGEST_DELAY.total_seconds(), description="Run in this many seconds")
    ] = None,
    at: Annotated[datetime | None, Query(description="Run at this time (RFC 3339, with a timezone)")] = None,
    depends_on: Annotated[
        list[str],
        Query(
            max_length=MAX_DEPENDENCIES,
            description="Ids of jobs to wait for (repeat the parameter for several)",
        ),
    ] = [],  # noqa: B006  (FastAPI copies query defaults)
    allow_failure: Annotated[
        bool, Query(description="Run even if a dependency failed (default: wait for success)")
    ] = False,
    at_front: Annotated[bool, Query(description="Put the job at the front of its queue")] = False,
    callback_url: Annotated[
        HttpUrl | None,
        Query(description="POST the job's final view here, signed, when it ends (http or https)"),
    ] = None,
    ttl: Annotated[
        int | None,
        Query(
            ge=1,
            le=LONGEST_DELAY.total_seconds(),
            description="Seconds the job may wait queued; not started by then, it is canceled unrun",
        ),
    ] = None,
    *,
    request: Request,
) -> EnqueueOptions:
    """Enqueue options are query parameters, so the body stays the job's own input."""
    settings: Settings = request.app.state.settings
    for job_id in depends_on:
        if not is_job_id(job_id):
            raise InvalidOptionError("depends_on", f"{job_id!r} is not a job id")
    if callback_url is not None and settings.webhook_secret is None:
        raise InvalidOptionError("callback_url", "this server has no WEBHOOK_SECRET to sign deliveries")
    return EnqueueOptions(
        queue=queue,
        timeout=timeout,
        retries=retries,
        result_ttl=result_ttl,
        at=_run_at(delay, at, bool(depends_on)),
        delay=delay or None,
        depends_on=tuple(dict.fromkeys(depends_on)),
        allow_failure=allow_failure,
        at_front=at_front,
        callback_url=str(callback_url) if callback_url is not None else None,
        ttl=ttl,
    )


def _run_at(delay: float | None, at: datetime | None, has_dependencies: bool) -> datetime | None:
    """When to run: None for now; refuses what cannot be meant (both, no timezone, long past)."""
    if delay is not None and at is not None:
        raise InvalidOptionError("at", "give `delay` or `at`, not both")
    if (delay or at) and has_dependencies:
        raise InvalidOptionError("depends_on", "a job waits for a time or for other jobs, not both")
    now = datetime.now(UTC)
    if delay:
        return now + timedelta(seconds=delay)
    if at is None:
        return None
    if at.tzinfo is None:
        raise InvalidOptionError("at", "`at` needs a timezone, e.g. 2026-11-26T09:30:00Z")
    if at < now - PAST_GRACE:
        raise InvalidOptionError("at", f"`at` is in the past ({at.isoformat()}); use a future time")
    if at > now + LONGEST_DELAY:
        raise InvalidOptionError("at", "`at` is more than a year away")
    return at if at > now else None


async def idempotency(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Replaying a request with the same key returns the jobs it made",
        ),
    ] = None,
) -> Idempotency | None:
    return Idempotency(key, request.app.state.settings.idempotency_ttl) if key is not None else None


OptionsDep = Annotated[EnqueueOptions, Depends(enqueue_options)]
IdempotencyDep = Annotated[Idempotency | None, Depends(idempotency)]
WAIT = Query(ge=0, description="Seconds to wait for the job to end before answering")


def add_routes(router: APIRouter, registry: Registry) -> None:
    """Add the jobs routes for this registry's catalogue, tagged `jobs`."""
    # 404, 409, 503 and the other errors are declared app-wide (service/web/errors.py COMMON_RESPONSES).
    for registered in registry:
        enqueues: dict[str, Any] = {
            "dependencies": [may_enqueue_job(registered.name)],
            "methods": ["POST"],
            "status_code": status.HTTP_202_ACCEPTED,
            "tags": TAGS,
        }
        router.add_api_route(
            f"/jobs/{registered.name}",
            _enqueue_endpoint(registered),
            response_model=JobView,
            route_class_override=enqueue_route(registered),  # one handler, not FastAPI's solver
            operation_id=f"enqueue_{registered.name}",
            summary=f"Enqueue {registered.name}",
            description=registered.description,
            responses=duplicate_responses(registered),
            **enqueues,
        )
        router.add_api_route(
            f"/jobs/{registered.name}/batch",
            _batch_endpoint(registered),
            response_model=list[JobView],
            operation_id=f"enqueue_{registered.name}_batch",
            summary=f"Enqueue a batch of {registered.name}",
            description=f"One {registered.name} job per item, all or none. {registered.description}",
            responses={
                413: {"description": "More items than MAX_BATCH_SIZE"},
                **batch_duplicate_responses(registered),
            },
            route_class_override=enqueue_route(registered),
            **enqueues,
        )
    # Who may not enqueue learns nothing of the catalogue from the 404 either.
    unknown: dict[str, Any] = {
        "methods": ["POST"],
        "include_in_schema": False,
        "tags": TAGS,
        "dependencies": [require("enqueue")],
    }
    router.add_api_route("/jobs/{name}", enqueue_unknown, **unknown)
    router.add_api_route("/jobs/{name}/batch", enqueue_unknown, **unknown)
    router.add_api_route(
        "/jobs/{job_id}",
        read_job,
        methods=["GET"],
        response_model=JobView,
        dependencies=[require("read")],
        tags=TAGS,
    )


def _enqueue_endpoint(registered: RegisteredJob[..., Any]) -> Any:
    model = registered.input_model

    # Declared for the OpenAPI schema and run by the route's own handler (routes/enqueue_route.py),
    # which reads these parameters; the app's objects come from its state.
    async def enqueue_job(
        request: Request,
        response: Response,
        options: OptionsDep,
        key: IdempotencyDep,
        wait: Annotated[float, WAIT] = 0,
        body: Any = None,
    ) -> JobView:
        state = request.app.state
        _check_wait(wait, state.settings.max_wait_seconds)
        params = body if body is not None else model()
        enqueued = await enqueue_async(state.batcher.execute, registered, [params], options, key)
        job_id = enqueued.ids[0]
        _describe(response, enqueued, job_id)
        if not wait and not enqueued.replayed and not enqueued.duplicates:  # answered from what was written
            return new_job_view(enqueued.jobs[0], registered.name, registered.flow)
        connection: Redis = state.connection
        registry: Registry = state.registry

        def read() -> JobView:  # a replay or a duplicate shows the job as it is now; a wait blocks
            job = fetch_job(connection, job_id)
            if wait and job.get_status(refresh=False) not in TERMINAL:
                job = wait_for_end(connection, job, wait)
            return job_view(job, registry)

        return await anyio.to_thread.run_sync(read, limiter=_limiter(request, wait))

    # The body's type is this job's input model; an input with no required field may be omitted.
    required = any(field.is_required() for field in model.model_fields.values())
    body_type = model if required else model | None
    return _with_body(enqueue_job, body_type, Body(... if required else None), f"enqueue_{registered.name}")


def _batch_endpoint(registered: RegisteredJob[..., Any]) -> Any:
    async def enqueue_batch(
        request: Request,
        response: Response,
        options: OptionsDep,
        key: IdempotencyDep,
        body: Any = None,
    ) -> list[JobView]:
        state = request.app.state
        items: list[BaseModel] = body
        if len(items) > state.settings.max_batch_size:
            limit = state.settings.max_batch_size
            raise TooLargeError(f"a batch holds at most {limit} items, not {len(items)}")
        enqueued = await enqueue_async(state.batcher.execute, registered, items, options, key)
        _describe(response, enqueued, None)
        if not enqueued.replayed and not enqueued.duplicates:
            return [new_job_view(job, registered.name, registered.flow) for job in enqueued.jobs]
        connection: Redis = state.connection
        registry: Registry = state.registry

        def read() -> list[JobView]:  # the jobs the items got (maybe earlier ones), as they are now
            return job_views(connection, fetch_jobs(connection, enqueued.ids), registry)

        return await anyio.to_thread.run_sync(read)

    body = Body(..., min_length=1, description=f"Inputs of {registered.name}, one job each")
    items = list[registered.input_model]  # type: ignore[name-defined]
    return _with_body(enqueue_batch, items, body, f"enqueue_{registered.name}_batch")


def _with_body(endpoint: Any, annotation: Any, default: Any, name: str) -> Any:
    """Give the endpoint's `body` parameter its real type, known only once the job is."""
    signature = inspect.signature(endpoint)
    parameters = [
        param.replace(annotation=annotation, default=default) if param.name == "body" else param
        for param in signature.parameters.values()
    ]
    endpoint.__signature__ = signature.replace(parameters=parameters)
    endpoint.__name__ = name
    return endpoint


def _describe(response: Response, enqueued: Enqueued, job_id: str | None) -> None:
    if job_id is not None:
        response.headers["Location"] = f"/jobs/{job_id}"
    if enqueued.duplicates:
        mark_duplicates(response, enqueued.duplicates, job_id)
    if enqueued.replayed:
        response.headers["Idempotent-Replayed"] = "true"


async def enqueue_unknown(name: str, registry: RegistryDep) -> None:
    """Any name the catalogue does not hold: a 404 that lists the names it does."""
    raise UnknownJobNameError(name, registry.names())


async def read_job(
    request: Request,
    job_id: Annotated[str, JOB_ID],
    connection: ConnectionDep,
    registry: RegistryDep,
    settings: SettingsDep,
    wait: Annotated[float, WAIT] = 0,
) -> JobView:
    """Read a job: status, input, result or error, progress, attempts, timestamps."""
    _check_wait(wait, settings.max_wait_seconds)

    def read() -> JobView:
        job = fetch_job(connection, job_id)
        if wait and job.get_status(refresh=False) not in TERMINAL:
            job = wait_for_end(connection, job, wait)
        return job_view(job, registry)

    return await anyio.to_thread.run_sync(read, limiter=_limiter(request, wait))


def _check_wait(wait: float, longest: float) -> None:
    if wait > longest:
        raise InvalidOptionError("wait", f"wait is at most {longest:g} seconds")


def _limiter(request: Request, wait: float) -> anyio.CapacityLimiter | None:
    # Waits block a thread on Redis; they get their own threads so they never starve other routes.
    limiter: anyio.CapacityLimiter | None = request.app.state.wait_limiter if wait else None
    return limiter
