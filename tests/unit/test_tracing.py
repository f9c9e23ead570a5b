"""Tracing (service/tracing.py): off unless OTEL_* asks for it; on, one request's trace holds its
enqueue, the worker's run and the webhook delivery, with the parentage the README describes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from service import tracing
from service.dev.receiver import Receiver, webhook_receiver
from service.settings import ConfigError

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"
SECRET = "tracing-test-webhook-secret"


@pytest.fixture
def received() -> Iterator[Receiver]:
    """A webhook endpoint on loopback."""
    with webhook_receiver() as receiver:
        yield receiver


@pytest.fixture
def hooked(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> Callable[[], TestClient]:
    """Makes the app (once tracing is set up) with a webhook secret the burst worker shares."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", "redis://fakeredis.invalid:6379/0")
    return lambda: make_client(webhook_secret=SECRET)


def one(spans: list[ReadableSpan], kind: SpanKind, name: str) -> ReadableSpan:
    [found] = [span for span in spans if span.kind == kind and span.name == name]
    return found


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def own_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def traceparent(span: ReadableSpan) -> str:
    """The W3C header naming `span` as the parent."""
    assert span.context is not None
    return f"00-{trace_of(span):032x}-{own_id(span):016x}-{int(span.context.trace_flags):02x}"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),  # naming the service alone exports nothing
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_SDK_DISABLED": "false"}, True),  # the SDK's defaults: OTLP to localhost:4318
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_environment_asks_for_it(environ: dict[str, str], expected: bool) -> None:
    assert tracing.wanted(environ) is expected


def _python(code: str, **environ: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": "redis://127.0.0.1:1/0", **environ}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_off_no_process_loads_the_tracing_sdk_or_instruments_the_app() -> None:
    loaded = _python(
        "import sys; from service.web.app import create_app; "
        "import service.worker.main, service.clock.clock; app = create_app(); "
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', "
        "'opentelemetry.instrumentation', 'opentelemetry.exporter'))), "
        "getattr(app, '_is_instrumented_by_opentelemetry', False))"
    )
    assert loaded == "[] False"


def test_on_each_process_names_its_service_unless_otel_service_name_does() -> None:
    code = "from service import tracing; tracing.configure('offload-web'); "
    code += "print(tracing.provider().resource.attributes['service.name'])"
    assert _python(code, OTEL_TRACES_EXPORTER="console") == "offload-web"
    assert _python(code, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="shop") == "shop"


def test_the_exporters_are_those_otel_traces_exporter_names() -> None:
    [console] = tracing.exporters({"OTEL_TRACES_EXPORTER": "console"})
    assert isinstance(console, ConsoleSpanExporter)
    [otlp] = tracing.exporters({})  # the default, `otlp`: OTLP over HTTP (protobuf)
    assert isinstance(otlp, OTLPSpanExporter)
    otlp.shutdown()  # type: ignore[no-untyped-call]
    with pytest.raises(ConfigError, match="'zipkin', which no installed package provides"):
        tracing.exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_one_requests_trace_holds_its_enqueue_the_run_and_the_webhook(
    spans: InMemorySpanExporter,
    hooked: Callable[[], TestClient],
    connection: Redis,
    run_jobs: Callable[[], None],
    received: Receiver,
) -> None:
    url = received.url
    client = hooked()
    response = client.post(
        "/jobs/word_count",
        json={"text": "a b"},
        params={"callback_url": url},
        headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-42"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert response.json()["request_id"] == "req-42"
    run_jobs()

    finished = list(spans.get_finished_spans())
    server = one(finished, SpanKind.SERVER, "POST /jobs/word_count")
    send = one(finished, SpanKind.PRODUCER, "send default")
    run = one(finished, SpanKind.CONSUMER, "process default")
    send_hook = one(finished, SpanKind.PRODUCER, "send webhooks")
    delivery = one(finished, SpanKind.CONSUMER, "process webhooks")
    post = one(finished, SpanKind.CLIENT, "POST")
    chain = [server, send, run, send_hook, delivery, post]
    assert {trace_of(span) for span in chain} == {TRACE_ID}  # the caller's trace, end to end
    assert [parent_of(span) for span in chain] == [CALLER_SPAN_ID, *map(own_id, chain[:-1])]
    assert [link.context.span_id for link in run.links] == [own_id(send)]

    assert dict(send.attributes or {}) == {
        "messaging.system": "rq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "default",
        "messaging.message.id": job_id,
        "offload.request_id": "req-42",
    }
    assert dict(run.attributes or {}) == {
        "messaging.system": "rq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": job_id,
        "offload.job.name": "word_count",
        "offload.job.attempt": 1,
        "offload.job.outcome": "finished",
        "offload.request_id": "req-42",
    }
    assert (delivery.attributes or {})["offload.job.name"] == "deliver_callback"
    assert (delivery.attributes or {})["offload.request_id"] == "req-42"  # carried by the run's enqueue
    port = int(url.split(":")[2].split("/")[0])
    assert dict(post.attributes or {}) == {
        "http.request.method": "POST",
        "url.full": f"http://127.0.0.1:{port}/hook",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 204,
    }
    # The receiver can continue the trace: the POST carried its own span's context.
    [headers] = [post.headers for post in received.posts]
    assert headers["traceparent"] == traceparent(post)

    # The context the job carries is its send span's; the view shows the request id.
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    assert job.meta["trace"] == {"traceparent": traceparent(send)}
    assert client.get(f"/jobs/{job_id}").json()["request_id"] == "req-42"


def test_a_batch_is_one_send_span_for_all_its_jobs(
    spans: InMemorySpanExporter, make_client: Callable[..., TestClient], connection: Redis
) -> None:
    client = make_client()
    response = client.post(
        "/jobs/word_count/batch", json=[{"text": "a"}, {"text": "b"}], params={"queue": "low"}
    )
    assert response.status_code == 202, response.text
    send = one(list(spans.get_finished_spans()), SpanKind.PRODUCER, "send low")
    assert (send.attributes or {})["messaging.batch.message_count"] == 2
    assert "messaging.message.id" not in (send.attributes or {})
    carried = {
        json.dumps(Job.fetch(view["id"], connection=connection, serializer=JSONSerializer).meta["trace"])
        for view in response.json()
    }
    assert carried == {json.dumps({"traceparent": traceparent(send)})}


def test_off_a_job_carries_its_request_id_and_no_trace_and_its_webhook_no_traceparent(
    hooked: Callable[[], TestClient],
    connection: Redis,
    run_jobs: Callable[[], None],
    received: Receiver,
) -> None:
    url = received.url
    client = hooked()
    assert not getattr(client.app, "_is_instrumented_by_opentelemetry", False)
    response = client.post(
        "/jobs/word_count",
        json={"text": "a"},
        params={"callback_url": url},
        headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-7"},
    )
    job_id = response.json()["id"]
    run_jobs()
    meta = Job.fetch(job_id, connection=connection, serializer=JSONSerializer).meta
    assert meta["request_id"] == "req-7"
    assert "trace" not in meta
    [headers] = [post.headers for post in received.posts]
    assert "traceparent" not in headers
