"""Each run of a job as a span (tracing on): `process <queue>`, CONSUMER, from its start to its end.

Child or link. A run is a child of its enqueue's `send <queue>` span when that enqueue queued the
job to run now and nothing has queued it again since: its `enqueued_at` is still its `created_at`
(offload's enqueue stamps both with one instant; RQ restamps `enqueued_at` whenever it queues a
job again). Then one request's trace holds the enqueue, the run, and what the run starts (its
webhook delivery, other jobs). Every other run (a retry, a requeue, a delayed or scheduled job, a
dependant that waited for another job) starts when a timer, another job or a person decides,
minutes or hours later: it starts a trace of its own, linked to the send span. As a child it
would stretch the request's trace over hours, and a backend's waterfall, trace duration and tail
sampling with it. Every run span carries the link (the messaging conventions make the link the
rule and the parent an option for a single message), so both kinds lead back to the request.

The span is current while the job runs, so spans and enqueues the job makes are its children.
It is started and ended where report.py reports the run: the same thread, in the work horse, the
worker, a pool's child or a concurrent worker's slot thread. A run that ends in another process
than it started in (a work horse killed, its end reported by its worker) gets its span at the end,
from the run's start time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rq.job import Job

from service import tracing
from service.tracing import REQUEST_ID_META, TRACE_META

if TYPE_CHECKING:
    from opentelemetry.trace import Span

FAILED = frozenset({"failed", "retried"})


@dataclass
class _Run:
    span: Span
    token: object  # the context attached at its start, detached at its end
    thread: int


_running: dict[str, _Run] = {}  # by job id: runs started in this process and not yet ended


def attempt(job: Job) -> int:
    """Which run of the job this is, retries counted, as the job view's `attempts` counts them."""
    spent = len(job.retry_intervals or []) - (job.retries_left or 0)
    return max(spent, 0) + 1


def start_run(job: Job, name: str) -> None:
    """Open the run's span and make it current in this thread."""
    if not tracing.enabled():
        return
    from opentelemetry import context, trace

    span = _span(job, name, attempt(job))
    token = context.attach(trace.set_span_in_context(span))
    _running[job.id] = _Run(span, token, threading.get_ident())


def end_run(
    job: Job, name: str, outcome: str, *, flush: bool = False, started: datetime | None = None
) -> None:
    """End the run's span with its outcome; `flush` exports it now (a work horse about to exit).

    `started`: when the run started, if the job no longer says (a graceful stop's requeue restores
    the job as it was before the run)."""
    if not tracing.enabled():
        return
    from opentelemetry import context
    from opentelemetry.trace import StatusCode

    run = _running.pop(job.id, None)
    if run is None:  # started in another process: RQ has already counted a retry it queued
        number = attempt(job) - (1 if outcome == "retried" else 0)
        span = _span(job, name, number, started or job.started_at)
    else:
        span = run.span
    span.set_attribute("offload.job.outcome", outcome)
    if outcome in FAILED:
        error = job.meta.get("error")  # the job's own exception, as the catalogue records it
        kind = error.get("type") if isinstance(error, dict) else None
        span.set_attribute("error.type", str(kind) if kind else "_OTHER")
        span.set_status(StatusCode.ERROR, outcome)
    span.end()
    if run is not None and run.thread == threading.get_ident():
        context.detach(run.token)  # type: ignore[arg-type]
    if flush:
        tracing.flush()


def _span(job: Job, name: str, number: int, started: datetime | None = None) -> Span:
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind

    sent = tracing.context_from(job.meta.get(TRACE_META))
    queued_by_its_enqueue = job.enqueued_at is not None and job.enqueued_at == job.created_at
    attributes: dict[str, Any] = {
        "messaging.system": tracing.SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": job.origin,
        "messaging.message.id": job.id,
        "offload.job.name": name,
        "offload.job.attempt": number,
    }
    request_id = job.meta.get(REQUEST_ID_META)
    if isinstance(request_id, str):
        attributes["offload.request_id"] = request_id
    return tracing.tracer().start_span(
        f"process {job.origin}",
        # An empty context, not the current one: a run that is no child starts a trace of its own.
        context=sent if sent is not None and queued_by_its_enqueue else Context(),
        kind=SpanKind.CONSUMER,
        links=[tracing.link_to(sent)] if sent is not None else None,
        attributes=attributes,
        start_time=tracing.nanoseconds(started) if started is not None else None,
    )
