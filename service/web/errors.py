"""Errors the API answers with: each carries its HTTP status; one handler renders them all."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.schemas import ErrorBody
from service.store.enqueue import EnqueueError, IdempotencyConflictError, UnknownDependencyError
from service.store.errors import JobNotFoundError, JobStateError, UnknownQueueError

log = logging.getLogger(__name__)


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Declared on every operation, so the OpenAPI schema lists every answer a client can get.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body is not valid JSON"),
    401: _error("No API key, or not a valid one"),
    403: _error("The API key lacks the scope (or the job) this needs"),
    404: _error("No such job, no job of that name, or no queue of that name"),
    409: _error("The job's status, or an earlier request with the same Idempotency-Key, forbids this"),
    413: _error("The body (or the batch) is over its limit"),
    503: _error("Redis is unavailable; retry after a second"),
}


class OffloadError(Exception):
    """Base of the API's errors: `detail` becomes the JSON body, `status_code` the status."""

    status_code = 500
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: object) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownJobNameError(OffloadError):
    status_code = 404

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no job named {name!r}; known jobs: {', '.join(known)}")


class InvalidOptionError(OffloadError):
    """A query option out of range, in FastAPI's own 422 shape so clients parse one format."""

    status_code = 422

    def __init__(self, name: str, message: str) -> None:
        super().__init__([{"loc": ["query", name], "msg": message, "type": "value_error"}])


class RedisUnavailableError(OffloadError):
    status_code = 503


class ConflictError(OffloadError):
    """The job's state, or an earlier request, does not allow this one."""

    status_code = 409


class TooLargeError(OffloadError):
    status_code = 413


async def _offload_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OffloadError)
    headers = {"Retry-After": "1"} if exc.status_code == 503 else exc.headers
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    # Redis' own message names host and port but never the password; the traceback stays in the log.
    log.warning("Redis unavailable during %s %s: %s", request.method, request.url.path, exc)
    error = RedisUnavailableError(f"Redis is unavailable, try again shortly ({exc})")
    return await _offload_error(request, error)


async def _enqueue_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, UnknownDependencyError):
        error: OffloadError = InvalidOptionError("depends_on", str(exc))
    else:  # the store's only other refusal (service/store/enqueue.py)
        assert isinstance(exc, IdempotencyConflictError), exc
        error = ConflictError(str(exc))
    return await _offload_error(request, error)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobNotFoundError | UnknownQueueError)
    return JSONResponse({"detail": exc.detail}, status_code=404)


async def _job_state(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobStateError)
    return await _offload_error(request, ConflictError(exc.detail))


def install(app: FastAPI) -> None:
    """Map offload's errors and an unreachable Redis to JSON answers."""
    app.add_exception_handler(OffloadError, _offload_error)
    app.add_exception_handler(EnqueueError, _enqueue_error)
    app.add_exception_handler(JobNotFoundError, _not_found)
    app.add_exception_handler(UnknownQueueError, _not_found)
    app.add_exception_handler(JobStateError, _job_state)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
