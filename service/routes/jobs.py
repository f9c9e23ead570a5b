"""Routes on jobs: one enqueue operation per registered job, and reading a job back."""

# No `from __future__ import annotations` here: the enqueue routes are built at runtime and
# FastAPI reads their annotations as live objects.

import inspect
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status

from jobs.registry import QUEUES, EnqueueOptions, RegisteredJob, Registry
from service.deps import ConnectionDep, RegistryDep, SettingsDep
from service.errors import InvalidOptionError, UnknownJobNameError
from service.jobstate import TERMINAL, fetch_job, job_view, wait_for_end
from service.schemas import JobView

JOB_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,128}$", description="The id returned by the enqueue")
QueueName = Literal[QUEUES]  # type: ignore[valid-type]


def enqueue_options(
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
) -> EnqueueOptions:
    """Enqueue options are query parameters, so the body stays the job's own input."""
    return EnqueueOptions(queue=queue, timeout=timeout, retries=retries, result_ttl=result_ttl)


OptionsDep = Annotated[EnqueueOptions, Depends(enqueue_options)]


def build_router(registry: Registry) -> APIRouter:
    """The jobs routes for this registry's catalogue."""
    router = APIRouter(tags=["jobs"])
    for registered in registry:
        router.add_api_route(
            f"/jobs/{registered.name}",
            _enqueue_endpoint(registered),
            methods=["POST"],
            status_code=status.HTTP_202_ACCEPTED,
            response_model=JobView,
            operation_id=f"enqueue_{registered.name}",
            summary=f"Enqueue {registered.name}",
            description=registered.description,
            responses={404: {"description": "Unknown job name"}, 503: {"description": "Redis down"}},
        )
    router.add_api_route("/jobs/{name}", enqueue_unknown, methods=["POST"], include_in_schema=False)
    router.add_api_route("/jobs/{job_id}", read_job, methods=["GET"], response_model=JobView)
    return router


def _enqueue_endpoint(registered: RegisteredJob[..., Any]) -> Any:
    model = registered.input_model

    def enqueue_job(
        response: Response,
        connection: ConnectionDep,
        registry: RegistryDep,
        options: OptionsDep,
        body: Any = None,
    ) -> JobView:
        job = registered.enqueue_input(connection, body if body is not None else model(), options)
        response.headers["Location"] = f"/jobs/{job.id}"
        return job_view(job, registry)

    # The body's type is this job's input model; an input with no required field may be omitted.
    required = any(field.is_required() for field in model.model_fields.values())
    signature = inspect.signature(enqueue_job)
    body = signature.parameters["body"].replace(
        annotation=model if required else model | None,
        default=Body(... if required else None, description=f"Input of {registered.name}"),
    )
    enqueue_job.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*list(signature.parameters.values())[:-1], body]
    )
    enqueue_job.__name__ = f"enqueue_{registered.name}"
    return enqueue_job


def enqueue_unknown(name: str, registry: RegistryDep) -> None:
    """Any name the catalogue does not hold: a 404 that lists the names it does."""
    raise UnknownJobNameError(name, registry.names())


async def read_job(
    request: Request,
    job_id: Annotated[str, JOB_ID],
    connection: ConnectionDep,
    registry: RegistryDep,
    settings: SettingsDep,
    wait: Annotated[
        float, Query(ge=0, description="Seconds to wait for the job to end before answering")
    ] = 0,
) -> JobView:
    """Read a job: status, input, result or error, progress, timestamps."""
    if wait > settings.max_wait_seconds:
        raise InvalidOptionError("wait", f"wait is at most {settings.max_wait_seconds:g} seconds")

    def read() -> JobView:
        job = fetch_job(connection, job_id)
        if wait and job.get_status(refresh=False) not in TERMINAL:
            job = wait_for_end(connection, job, wait)
        return job_view(job, registry)

    # Waits block a thread on Redis; they get their own threads so they never starve other routes.
    limiter = request.app.state.wait_limiter if wait else None
    return await anyio.to_thread.run_sync(read, limiter=limiter)
