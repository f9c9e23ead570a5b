"""`AsyncClient`: offload's API on asyncio (or trio): `Client`'s methods, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import anyio
import httpx

from offload_client import calls
from offload_client.calls import Call, Config, JobRef
from offload_client.events import STREAM_HEADERS, Follow, JobEvent
from offload_client.generated import (
    BatchOptions,
    CatalogEntry,
    EnqueueOptions,
    Health,
    JobPage,
    Jobs,
    JobView,
    Queue,
    QueueView,
    Status,
    WorkerView,
)
from offload_client.retry import Attempts, Retry

T = TypeVar("T")


class AsyncClient:
    """offload's HTTP API, awaited: `await client.jobs.<name>(...)`; see `Client` for the semantics."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        wait_slice: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        self.config = Config(base_url, api_key, timeout, retry or Retry(), wait_slice)
        self._http = httpx.AsyncClient(transport=transport, **self.config.http_options(trust_env))
        self.jobs: Jobs[Coroutine[Any, Any, JobView], Coroutine[Any, Any, list[JobView]]] = Jobs(
            self.enqueue, self.enqueue_batch
        )

    async def enqueue(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
    ) -> JobView:
        """Enqueue the job `name` with this input; `client.jobs.<name>(...)` is the typed way."""
        return await self._call(calls.enqueue(name, input, options, idempotency_key))

    async def enqueue_batch(
        self,
        name: str,
        inputs: Sequence[Mapping[str, Any]],
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> list[JobView]:
        """Enqueue one job `name` per input, all or none."""
        return await self._call(calls.enqueue_batch(name, inputs, options, idempotency_key))

    async def get(self, job: JobRef, *, wait: float = 0.0) -> JobView:
        """The job now, or once it ended if that is within `wait` seconds (at most the server's limit)."""
        return await self._call(calls.read(job, wait))

    async def wait(self, job: JobRef, *, timeout: float | None = None) -> JobView:
        """The job once it ended, or as it is when `timeout` runs out (None: however long it takes)."""
        waiting = calls.Waiting(timeout, self.config.wait_slice)
        while True:
            view = await self.get(job, wait=waiting.next())
            if waiting.done(view):
                return view

    async def events(self, job: JobRef, *, timeout: float | None = None) -> AsyncIterator[JobEvent]:
        """The job's changes as they happen, reconnecting as needed, up to `end` (or `timeout`)."""
        follow = Follow(job, timeout, self.config.retry)
        while not follow.ended():
            if (expired := follow.expired()) is not None:
                yield expired
                return
            try:
                async with self._http.stream(
                    "GET", follow.path, headers=STREAM_HEADERS, timeout=follow.read_timeout()
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                    delay = follow.opened(response)
                    if delay is None:
                        async for line in response.aiter_lines():
                            if (event := follow.feed(line)) is not None:
                                yield event
                            if follow.ended():
                                return
                        delay = follow.closed()
            except httpx.TransportError as error:
                delay = follow.dropped(error)
            await anyio.sleep(delay)

    async def cancel(self, job: JobRef) -> JobView:
        """Cancel a job that has not run yet, or stop a running one (ConflictError once it ended)."""
        return await self._call(calls.cancel(job))

    async def requeue(self, job: JobRef) -> JobView:
        """Run a failed, stopped or canceled job again."""
        return await self._call(calls.requeue(job))

    async def delete(self, job: JobRef) -> None:
        """Delete an ended job's record and result."""
        await self._call(calls.delete(job))

    async def list_jobs(
        self,
        *,
        status: Status | None = None,
        queue: Queue | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of jobs, newest first; follow `next_cursor` until it is None."""
        return await self._call(calls.list_jobs(status, queue, name, limit, cursor))

    async def catalog(self) -> list[CatalogEntry]:
        return await self._call(calls.catalog())

    async def queues(self) -> list[QueueView]:
        return await self._call(calls.queues())

    async def workers(self) -> list[WorkerView]:
        return await self._call(calls.workers())

    async def pause_queue(self, name: str) -> QueueView:
        return await self._call(calls.pause_queue(name, paused=True))

    async def resume_queue(self, name: str) -> QueueView:
        return await self._call(calls.pause_queue(name, paused=False))

    async def health(self) -> Health:
        return await self._call(calls.health("/healthz"))

    async def ready(self) -> Health:
        """Whether the server's Redis answers (UnavailableError if not)."""
        return await self._call(calls.health("/readyz"))

    async def _call(self, call: Call[T]) -> T:
        attempts = Attempts(self.config.retry, call.retry)
        request = call.request(self._http, self.config.timeout)
        while True:
            try:
                response = await self._http.send(request)
            except httpx.TransportError as error:
                await anyio.sleep(attempts.after_error(error))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return call.parse(response)
            await anyio.sleep(delay)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
