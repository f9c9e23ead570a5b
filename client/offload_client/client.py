"""`Client`: offload's API, blocking (for the asyncio one, see `async_client.py`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

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


class Client:
    """offload's HTTP API: enqueue (`client.jobs.<name>(...)` or `enqueue`), wait, follow, manage.

    Enqueues and reads are retried after a dropped connection or a 503, within `retry`'s deadline;
    each enqueue sends one Idempotency-Key with all its tries, so a retry never makes a second job.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        wait_slice: float = 20.0,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        self.config = Config(base_url, api_key, timeout, retry or Retry(), wait_slice)
        self._http = httpx.Client(transport=transport, **self.config.http_options(trust_env))
        self.jobs: Jobs[JobView, list[JobView]] = Jobs(self.enqueue, self.enqueue_batch)

    def enqueue(
        self,
        name: str,
        input: Mapping[str, Any] | None = None,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
    ) -> JobView:
        """Enqueue the job `name` with this input; `client.jobs.<name>(...)` is the typed way."""
        return self._call(calls.enqueue(name, input, options, idempotency_key))

    def enqueue_batch(
        self,
        name: str,
        inputs: Sequence[Mapping[str, Any]],
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> list[JobView]:
        """Enqueue one job `name` per input, all or none."""
        return self._call(calls.enqueue_batch(name, inputs, options, idempotency_key))

    def get(self, job: JobRef, *, wait: float = 0.0) -> JobView:
        """The job now, or once it ended if that is within `wait` seconds (at most the server's limit)."""
        return self._call(calls.read(job, wait))

    def wait(self, job: JobRef, *, timeout: float | None = None) -> JobView:
        """The job once it ended, or as it is when `timeout` runs out (None: however long it takes)."""
        waiting = calls.Waiting(timeout, self.config.wait_slice)
        while True:
            view = self.get(job, wait=waiting.next())
            if waiting.done(view):
                return view

    def events(self, job: JobRef, *, timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's changes as they happen, reconnecting as needed, up to `end` (or `timeout`)."""
        follow = Follow(job, timeout, self.config.retry)
        while not follow.ended():
            if (expired := follow.expired()) is not None:
                yield expired
                return
            try:
                with self._http.stream(
                    "GET", follow.path, headers=STREAM_HEADERS, timeout=follow.read_timeout()
                ) as response:
                    if response.status_code != 200:
                        response.read()
                    delay = follow.opened(response)
                    if delay is None:
                        for line in response.iter_lines():
                            if (event := follow.feed(line)) is not None:
                                yield event
                            if follow.ended():
                                return
                        delay = follow.closed()
            except httpx.TransportError as error:
                delay = follow.dropped(error)
            time.sleep(delay)

    def cancel(self, job: JobRef) -> JobView:
        """Cancel a job that has not run yet, or stop a running one (ConflictError once it ended)."""
        return self._call(calls.cancel(job))

    def requeue(self, job: JobRef) -> JobView:
        """Run a failed, stopped or canceled job again."""
        return self._call(calls.requeue(job))

    def delete(self, job: JobRef) -> None:
        """Delete an ended job's record and result."""
        self._call(calls.delete(job))

    def list_jobs(
        self,
        *,
        status: Status | None = None,
        queue: Queue | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of jobs, newest first; follow `next_cursor` until it is None."""
        return self._call(calls.list_jobs(status, queue, name, limit, cursor))

    def catalog(self) -> list[CatalogEntry]:
        return self._call(calls.catalog())

    def queues(self) -> list[QueueView]:
        return self._call(calls.queues())

    def workers(self) -> list[WorkerView]:
        return self._call(calls.workers())

    def pause_queue(self, name: str) -> QueueView:
        return self._call(calls.pause_queue(name, paused=True))

    def resume_queue(self, name: str) -> QueueView:
        return self._call(calls.pause_queue(name, paused=False))

    def health(self) -> Health:
        return self._call(calls.health("/healthz"))

    def ready(self) -> Health:
        """Whether the server's Redis answers (UnavailableError if not)."""
        return self._call(calls.health("/readyz"))

    def _call(self, call: Call[T]) -> T:
        attempts = Attempts(self.config.retry, call.retry)
        request = call.request(self._http, self.config.timeout)
        while True:
            try:
                response = self._http.send(request)
            except httpx.TransportError as error:
                time.sleep(attempts.after_error(error))
                continue
            delay = attempts.after_response(response)
            if delay is None:
                return call.parse(response)
            time.sleep(delay)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
