"""Runs as spans (service/worker/trace.py) and the request id in a run's log lines (report.py): a run
queued by its enqueue is the send span's child; a retry, a requeue or a job queued again later is a
trace of its own linked to it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from service import tracing
from service.catalog import RegisteredJob, Registry
from service.logs import HANDLER_NAME, configure_logging, request_id_var
from service.store.control import requeue
from service.store.layout import job_key
from service.worker.concurrent import ConcurrentWorker
from service.worker.main import build_worker
from service.worker.trace import end_run


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def work(connection: Redis, registry: Registry) -> Iterator[Callable[..., None]]:
    """Run the queued jobs to the end with a burst worker of a kind (`simple`, `concurrent`)."""

    def run(kind: str = "simple") -> None:
        build_worker(connection, kind=kind, registry=registry).work(burst=True, with_scheduler=False)

    yield run
    # RQ's work loop installs its stop handlers for good: give pytest its own back.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def from_a_request(connection: Redis, registered: RegisteredJob[..., Any], **params: Any) -> Job:
    """Enqueue as the web does: with its request id, inside the request's span (tracing on)."""
    token = request_id_var.set("req-9")
    try:
        if not tracing.enabled():
            return registered.enqueue(connection, **params)
        with tracing.tracer().start_as_current_span("POST /jobs", kind=SpanKind.SERVER):
            return registered.enqueue(connection, **params)
    finally:
        request_id_var.reset(token)


def of_kind(spans: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in spans.get_finished_spans() if s.kind == kind), key=lambda s: s.start_time or 0)


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def test_a_retry_is_a_trace_of_its_own_linked_to_the_enqueue(
    spans: InMemorySpanExporter, connection: Redis, registry: Registry, work: Callable[..., None]
) -> None:
    calls: list[int] = []

    @registry.job(retries=1, retry_intervals=(0,))
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("not this time")
        return "ok"

    job = from_a_request(connection, flaky)
    work()
    [send] = of_kind(spans, SpanKind.PRODUCER)
    first, retry = of_kind(spans, SpanKind.CONSUMER)
    assert first.parent is not None
    assert (first.parent.trace_id, first.parent.span_id) == ids(send)
    assert retry.parent is None  # a new trace...
    assert ids(retry)[0] != ids(send)[0]
    assert [(link.context.trace_id, link.context.span_id) for link in retry.links] == [ids(send)]  # ...linked
    assert (first.attributes or {})["offload.job.attempt"] == 1
    assert (first.attributes or {})["offload.job.outcome"] == "retried"
    assert (first.attributes or {})["error.type"] == "ValueError"  # the job's own exception
    assert first.status.status_code == StatusCode.ERROR
    assert (retry.attributes or {})["offload.job.attempt"] == 2
    assert (retry.attributes or {})["offload.job.outcome"] == "finished"
    assert (retry.attributes or {})["messaging.message.id"] == job.id
    assert retry.status.status_code == StatusCode.UNSET


@pytest.mark.parametrize("again", ["requeued", "queued again later"])
def test_a_run_its_enqueue_did_not_queue_is_linked_not_a_child(
    again: str, spans: InMemorySpanExporter, connection: Redis, registry: Registry, work: Callable[..., None]
) -> None:
    @registry.job(retries=0)
    def fails_first(fail: bool = True) -> None:
        if fail and not of_kind(spans, SpanKind.CONSUMER):
            raise RuntimeError("first run")

    job = from_a_request(connection, fails_first)
    if again == "requeued":
        work()
        requeue(connection, job.id, registry)
    else:  # as the scheduler (a delay, a retry's backoff) or a finished dependency queues it
        connection.hset(job_key(job.id), "enqueued_at", utcformat(now() + timedelta(seconds=1)))
    work()
    [send] = of_kind(spans, SpanKind.PRODUCER)
    last = of_kind(spans, SpanKind.CONSUMER)[-1]
    assert last.parent is None
    assert [(link.context.trace_id, link.context.span_id) for link in last.links] == [ids(send)]
    assert (last.attributes or {})["offload.request_id"] == "req-9"


def test_a_run_that_ended_in_another_process_gets_its_span_at_the_end(
    spans: InMemorySpanExporter, connection: Redis, registry: Registry
) -> None:
    @registry.job()
    def killed() -> None: ...

    enqueued = from_a_request(connection, killed)
    job = Job.fetch(enqueued.id, connection=connection, serializer=JSONSerializer)
    job.started_at = now() - timedelta(seconds=3)  # its horse started it, then died
    end_run(job, "killed", "failed")
    [send] = of_kind(spans, SpanKind.PRODUCER)
    [run] = of_kind(spans, SpanKind.CONSUMER)
    assert run.parent is not None
    assert (run.parent.trace_id, run.parent.span_id) == ids(send)
    assert run.start_time == int(job.started_at.timestamp() * 1e9)
    assert (run.end_time or 0) - run.start_time >= 3e9
    assert (run.attributes or {})["offload.job.outcome"] == "failed"
    assert (run.attributes or {})["error.type"] == "_OTHER"


def test_spans_a_job_makes_are_children_of_its_run_in_threads_and_on_the_shared_loop(
    spans: InMemorySpanExporter, connection: Redis, registry: Registry, work: Callable[..., None]
) -> None:
    @registry.job()
    def in_a_thread() -> None:
        with tracing.tracer().start_as_current_span("thread work"):
            pass

    @registry.job()
    async def on_the_loop() -> None:
        with tracing.tracer().start_as_current_span("loop work"):
            await asyncio.sleep(0)

    in_a_thread.enqueue(connection)
    on_the_loop.enqueue(connection)
    work("concurrent")
    runs = {(s.attributes or {})["offload.job.name"]: s for s in of_kind(spans, SpanKind.CONSUMER)}
    inner = {s.name: s for s in of_kind(spans, SpanKind.INTERNAL)}
    for name, work_name in (("in_a_thread", "thread work"), ("on_the_loop", "loop work")):
        parent = inner[work_name].parent
        assert parent is not None
        assert (parent.trace_id, parent.span_id) == ids(runs[name])


def test_a_run_a_stopping_worker_requeues_ends_its_span_interrupted(
    spans: InMemorySpanExporter, connection: Redis, registry: Registry
) -> None:
    @registry.job()
    def polling() -> None:  # answers the worker's interruption at once
        while True:
            time.sleep(0.02)

    job = from_a_request(connection, polling)
    worker = build_worker(connection, kind="concurrent", registry=registry)
    assert isinstance(worker, ConcurrentWorker)
    worker.grace_seconds = 0.2

    def stop_once_running() -> None:
        deadline = time.monotonic() + 10
        while not worker._runs and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_running, daemon=True).start()
    try:
        worker.work(burst=False, with_scheduler=False)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert Job.fetch(job.id, connection=connection, serializer=JSONSerializer).get_status() == "queued"
    [send] = of_kind(spans, SpanKind.PRODUCER)
    [run] = of_kind(spans, SpanKind.CONSUMER)
    assert (run.attributes or {})["offload.job.outcome"] == "interrupted"
    assert run.parent is not None
    assert (run.parent.trace_id, run.parent.span_id) == ids(send)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every log line, as the worker process writes them (JSON), into a buffer."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("json", "INFO", stream)
    yield stream
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def test_a_runs_lines_carry_its_request_id_and_the_next_runs_do_not(
    json_lines: io.StringIO, connection: Redis, registry: Registry, work: Callable[..., None]
) -> None:
    @registry.job()
    def chatty(n: int) -> None:
        logging.getLogger("jobs.chatty").info("working on %d", n)

    first = from_a_request(connection, chatty, n=1)  # tracing off: the request id goes all the same
    chatty.enqueue(connection, n=2)  # no request: a periodic run, a script
    work()
    lines = [json.loads(text) for text in json_lines.getvalue().splitlines()]
    ours = [line for line in lines if line.get("job_id") == first.id or line["message"] == "working on 1"]
    assert [line["message"] for line in ours] == ["job started", "working on 1", "job ended"]
    assert {line["request_id"] for line in ours} == {"req-9"}
    theirs = [line for line in lines if line["message"] == "working on 2"]
    assert [line.get("request_id") for line in theirs] == [None]
    assert request_id_var.get() is None
