"""OpenTelemetry tracing: on when the standard OTEL_* environment asks for it, free when it does not.

Off (nothing set), the SDK is never imported: no span is made, the web app is not instrumented and
no trace context is stored with jobs; only the request id is (`carried`). On, each process exports
its spans where OTEL_* says, and every job carries its enqueue's context, so a worker's run of it
continues the request's trace (service/worker/trace.py). This module is the one that knows the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from service.logs import request_id_var
from service.settings import ConfigError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Span, Tracer

# What a job's meta carries from its enqueue: the request's id, and (tracing on) its trace context.
REQUEST_ID_META = "request_id"
TRACE_META = "trace"

# Any of these set turns tracing on; OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none keeps it off.
SWITCHES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER")
SYSTEM = "rq"  # messaging.system: RQ's queues carry the jobs
EXPORTER_GROUP = "opentelemetry_traces_exporter"  # the SDK's entry points, where exporters register
FLUSH_MILLIS = 5000

_tracer: Tracer | None = None  # set once tracing is on in this process
_provider: TracerProvider | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for tracing: an exporter or endpoint named, or the SDK enabled
    explicitly (OTEL_SDK_DISABLED=false)."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower()
    if disabled == "true" or environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return disabled == "false" or any(environ.get(name, "").strip() for name in SWITCHES)


def enabled() -> bool:
    return _tracer is not None


def configure(service_name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on in this process if the environment asks for it (once); whether it is on.

    `service_name` is the default of OTEL_SERVICE_NAME. The sampler (OTEL_TRACES_SAMPLER), the
    batching (OTEL_BSP_*) and each exporter's own settings are read by the SDK itself.
    """
    if _tracer is not None or not wanted(environ):
        return _tracer is not None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider, globally=True)
    return True


def exporters(environ: Mapping[str, str]) -> list[Any]:
    """OTEL_TRACES_EXPORTER's exporters (default `otlp`: OTLP over HTTP), found as the SDK finds them."""
    from importlib.metadata import entry_points

    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    exporters = []
    for given in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        name = given.strip().lower()
        if name == "otlp":
            name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
        found = entry_points(group=EXPORTER_GROUP, name=name)
        if not found:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER names {given.strip()!r}, which no installed package provides "
                f"(installed: {', '.join(sorted(e.name for e in entry_points(group=EXPORTER_GROUP)))})"
            )
        exporters.append(next(iter(found)).load()())
    return exporters


def install(provider: TracerProvider, *, globally: bool = False) -> None:
    """Trace with `provider` from now on (tests pass one with an in-memory exporter)."""
    global _tracer, _provider
    _provider, _tracer = provider, provider.get_tracer("offload")
    if globally:  # for instrumentations a job's own code uses (httpx, SQLAlchemy...)
        from opentelemetry import trace

        trace.set_tracer_provider(provider)


def uninstall() -> None:
    """Tracing off again (tests)."""
    global _tracer, _provider
    _tracer = _provider = None


def flush() -> None:
    """Export what this process has ended, now: a work horse exits with os._exit, no atexit."""
    if _provider is not None:
        _provider.force_flush(FLUSH_MILLIS)


def tracer() -> Tracer:
    assert _tracer is not None, "tracing is off"
    return _tracer


def provider() -> TracerProvider:
    assert _provider is not None, "tracing is off"
    return _provider


# --- context carried by a job --------------------------------------------------------------------


def carrier_of(span: Span) -> dict[str, str]:
    """A span's context as the propagators (OTEL_PROPAGATORS: W3C traceparent by default) write it."""
    from opentelemetry import propagate, trace

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def context_from(carrier: object) -> Context | None:
    """The context a job carries (its enqueue's send span), if any is valid."""
    if not isinstance(carrier, dict) or not carrier:
        return None
    from opentelemetry import propagate, trace

    context = propagate.extract({str(k): str(v) for k, v in carrier.items()})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def link_to(context: Context) -> Link:
    from opentelemetry import trace

    return trace.Link(trace.get_current_span(context).get_span_context())


def nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


# --- the enqueue: a PRODUCER span ------------------------------------------------------------------


class Sending:
    """One enqueue: what its jobs carry in their meta and, tracing on, its `send <queue>` span."""

    __slots__ = ("meta", "span")

    def __init__(self, meta: dict[str, Any], span: Span | None = None) -> None:
        self.meta = meta  # merged into each job's meta (service/store/write.py)
        self.span = span

    def __enter__(self) -> Sending:
        return self

    def written(self, ids: list[str], replayed: bool) -> None:
        if self.span is None:
            return
        if len(ids) == 1:
            self.span.set_attribute("messaging.message.id", ids[0])
        if replayed:  # an Idempotency-Key's replay: nothing was written, these are the first request's
            self.span.set_attribute("offload.idempotent_replay", True)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.span is None:
            return
        if error is not None:
            from opentelemetry.trace import StatusCode

            self.span.record_exception(error)
            self.span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
            self.span.set_attribute("error.type", type(error).__name__)
        self.span.end()


def sending(queue: str, count: int) -> Sending:
    """Start an enqueue of `count` jobs: `with sending(queue, n) as send: ... send.meta ...`."""
    request_id = request_id_var.get()  # the web request's, or the run's in a worker (report.py)
    meta: dict[str, Any] = {} if request_id is None else {REQUEST_ID_META: request_id}
    if _tracer is None:
        return Sending(meta)
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": queue,
    }
    if count != 1:
        attributes["messaging.batch.message_count"] = count
    if request_id is not None:
        attributes["offload.request_id"] = request_id
    span = _tracer.start_span(f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes)
    meta[TRACE_META] = carrier_of(span)
    return Sending(meta, span)


# --- an outgoing HTTP request: a CLIENT span ----------------------------------------------------------


@dataclass
class Call:
    """An outgoing request's span, and the headers that carry its context to the server."""

    span: Span | None
    headers: dict[str, str] = field(default_factory=dict)

    def answered(self, status_code: int | None) -> None:
        if self.span is None:
            return
        from opentelemetry.trace import StatusCode

        if status_code is not None:
            self.span.set_attribute("http.response.status_code", status_code)
        if status_code is None or status_code >= 400:
            self.span.set_attribute("error.type", str(status_code) if status_code else "_OTHER")
            self.span.set_status(StatusCode.ERROR)


@contextmanager
def calling(method: str, url: str) -> Iterator[Call]:
    """A CLIENT span around one HTTP request (tracing on), its context in `call.headers`."""
    if _tracer is None:
        yield Call(None)
        return
    from opentelemetry.trace import SpanKind

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        # Without the query and any user:password: they may carry the receiver's secrets.
        "url.full": f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}",
        "server.address": parts.hostname or "",
        "server.port": port,
    }
    with _tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield Call(span, carrier_of(span))
