"""Each API call as data, shared by `Client` and `AsyncClient`: the request to send (and resend), and
how its answer is read. The two clients only send, wait and sleep, each its own way.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from offload_client.errors import raise_for_status
from offload_client.generated import (
    BatchOptions,
    CatalogEntry,
    EnqueueOptions,
    Health,
    JobPage,
    JobView,
    QueueView,
    Status,
    WorkerView,
)
from offload_client.retry import Retry

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# A job as a call names it: its view (as enqueue returned it) or its id.
JobRef = JobView | str
# RQ's statuses after which a job never changes again (offload's TERMINAL).
TERMINAL = frozenset({"finished", "failed", "stopped", "canceled"})
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Config:
    """What both clients are made of, apart from their httpx client."""

    base_url: str
    api_key: str | None = None
    timeout: float = 10.0  # each request's; a `?wait=` request gets its wait on top
    retry: Retry = field(default_factory=Retry)
    # The longest `?wait=` one request asks for: under the server's MAX_WAIT_SECONDS (25 s by
    # default) and under routers' idle limits (Heroku's: 30 s). `wait()` asks as often as it needs.
    wait_slice: float = 20.0

    def http_options(self, trust_env: bool) -> dict[str, Any]:
        """The keyword arguments of the httpx client (sync or async) the API is reached with."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {
            "base_url": self.base_url,
            "headers": headers,
            "timeout": self.timeout,
            "trust_env": trust_env,
        }


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how its answer becomes a value (or a typed error)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    retry: bool = False  # safe to send again when no answer (or a 503) came back
    wait: float = 0.0  # seconds the server may hold it, added to the read timeout

    def request(self, http: httpx.Client | httpx.AsyncClient, timeout: float) -> httpx.Request:
        # Built once per call: every retry resends these very bytes, with the same Idempotency-Key.
        return http.build_request(
            self.method,
            self.path,
            params=self.params,
            content=self.body,
            headers=self.headers,
            timeout=timeout + self.wait,
        )


def job_id(job: JobRef) -> str:
    return job if isinstance(job, str) else job.id


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        raise_for_status(response)
        return model.model_validate_json(response.content)

    return parse


def _models(model: type[M]) -> Callable[[httpx.Response], list[M]]:
    adapter = TypeAdapter(list[model])  # type: ignore[valid-type]

    def parse(response: httpx.Response) -> list[M]:
        raise_for_status(response)
        models: list[M] = adapter.validate_json(response.content)
        return models

    return parse


def _nothing(response: httpx.Response) -> None:
    raise_for_status(response)


def enqueue(
    name: str, input: Mapping[str, Any] | None, options: EnqueueOptions | None, key: str | None
) -> Call[JobView]:
    """POST /jobs/{name}: retried safely, under one Idempotency-Key for all its tries."""
    query = _options(options or {})
    wait = float(options.get("wait", 0)) if options else 0.0
    return _enqueue(f"/jobs/{name}", dict(input or {}), query, key, _model(JobView), wait)


def enqueue_batch(
    name: str, inputs: Sequence[Mapping[str, Any]], options: BatchOptions | None, key: str | None
) -> Call[list[JobView]]:
    """POST /jobs/{name}/batch: all or none, retried like a single enqueue."""
    return _enqueue(
        f"/jobs/{name}/batch", [dict(i) for i in inputs], _options(options or {}), key, _models(JobView)
    )


def _enqueue(
    path: str,
    body: Any,
    params: tuple[tuple[str, str], ...],
    key: str | None,
    parse: Callable[[httpx.Response], T],
    wait: float = 0.0,
) -> Call[T]:
    content = json.dumps(to_jsonable_python(body), separators=(",", ":")).encode()
    headers = (("Content-Type", "application/json"), (IDEMPOTENCY_HEADER, key or str(uuid.uuid4())))
    return Call("POST", path, parse, params, content, headers, retry=True, wait=wait)


def _options(options: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The options as query parameters (a retry sends them again as they are: the server compares a
    repeat under the same Idempotency-Key on its `delay`, not on the time the delay came to)."""
    values = dict(options)
    params: list[tuple[str, str]] = []
    for name, value in values.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                params.append((name, _query_value(item)))
    return tuple(params)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def read(job: JobRef, wait: float = 0.0) -> Call[JobView]:
    params = (("wait", _query_value(wait)),) if wait else ()
    return Call("GET", f"/jobs/{job_id(job)}", _model(JobView), params, retry=True, wait=wait)


def cancel(job: JobRef) -> Call[JobView]:
    # Not retried: a cancel that worked but lost its answer would read 409 ("already canceled").
    return Call("POST", f"/jobs/{job_id(job)}/cancel", _model(JobView))


def requeue(job: JobRef) -> Call[JobView]:
    return Call("POST", f"/jobs/{job_id(job)}/requeue", _model(JobView))


def delete(job: JobRef) -> Call[None]:
    return Call("DELETE", f"/jobs/{job_id(job)}", _nothing)


def list_jobs(
    status: Status | None, queue: str | None, name: str | None, limit: int, cursor: str | None
) -> Call[JobPage]:
    filters = {"status": status, "queue": queue, "name": name, "limit": limit, "cursor": cursor}
    params = tuple((key, str(value)) for key, value in filters.items() if value is not None)
    return Call("GET", "/jobs", _model(JobPage), params, retry=True)


def catalog() -> Call[list[CatalogEntry]]:
    return Call("GET", "/catalog", _models(CatalogEntry), retry=True)


def queues() -> Call[list[QueueView]]:
    return Call("GET", "/queues", _models(QueueView), retry=True)


def workers() -> Call[list[WorkerView]]:
    return Call("GET", "/workers", _models(WorkerView), retry=True)


def pause_queue(name: str, paused: bool) -> Call[QueueView]:
    # Pausing twice is pausing once: safe to retry.
    return Call("POST", f"/queues/{name}/{'pause' if paused else 'resume'}", _model(QueueView), retry=True)


def health(path: str) -> Call[Health]:
    # Not retried: a health check says how things are now.
    return Call("GET", path, _model(Health))


class Waiting:
    """`wait(job, timeout)` as a series of `?wait=` requests no longer than the slice each."""

    def __init__(
        self, timeout: float | None, slice: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.clock = clock
        self.deadline = None if timeout is None else clock() + timeout
        self.slice = slice

    def next(self) -> float:
        """The wait of the next request."""
        if self.deadline is None:
            return self.slice
        return max(0.0, min(self.slice, self.deadline - self.clock()))

    def done(self, job: JobView) -> bool:
        """Whether to answer with this view: it ended, or the time is up."""
        return job.status in TERMINAL or (self.deadline is not None and self.clock() >= self.deadline)
