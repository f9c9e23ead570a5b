"""Tracing on real processes: the Procfile's web and worker export over OTLP/HTTP to a collector in
this test, and one request's trace holds its enqueue, the worker's run and the webhook delivery."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from service.dev.harness import StartRedis, StartStack, wait_until
from service.dev.receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
WAIT = 30  # seconds any wait here gives up after


@dataclass(frozen=True)
class Exported:
    """A span as a collector received it."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[str, ...]
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP receiver on loopback (`/v1/traces`, protobuf): keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Exported] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(_exported(resource["service.name"], span) for span in scope_spans.spans)

    def named(self, name: str, kind: int) -> list[Exported]:
        return [span for span in list(self.spans) if span.name == name and span.kind == kind]


def _exported(service: str, span: Span) -> Exported:
    attributes: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        attributes[attribute.key] = getattr(value, value.WhichOneof("value") or "string_value")
    return Exported(
        service=service,
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        links=tuple(link.span_id.hex() for link in span.links),
        attributes=attributes,
    )


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    """A webhook endpoint on loopback."""
    with webhook_receiver() as receiver:
        yield receiver


# The Procfile's default (threads and a loop in one process), and the forking worker, whose work
# horse exports its spans before it exits.
@pytest.mark.parametrize("kind", ["concurrent", "fork"])
def test_a_requests_trace_holds_its_enqueue_the_run_and_the_webhook(
    kind: str,
    start_redis: StartRedis,
    start_stack: StartStack,
    tmp_path: Path,
    collector: Collector,
    hook: Receiver,
) -> None:
    url = hook.url
    redis = start_redis(tmp_path / "redis")
    stack = start_stack(
        redis.url,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, not the default 5 s
            "LOG_FORMAT": "json",
            "WORKER_KIND": kind,
        },
    )
    response = stack.client.post(
        "/jobs/word_count",
        json={"text": "one two"},
        params={"callback_url": url},
        headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01", "X-Request-ID": "req-trace-1"},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    headers = hook.wait(1, timeout=WAIT)[0].headers

    expected = [
        ("offload-web", "POST /jobs/word_count", Span.SPAN_KIND_SERVER),
        ("offload-web", "send default", Span.SPAN_KIND_PRODUCER),
        ("offload-worker", "process default", Span.SPAN_KIND_CONSUMER),
        ("offload-worker", "send webhooks", Span.SPAN_KIND_PRODUCER),
        ("offload-worker", "process webhooks", Span.SPAN_KIND_CONSUMER),
        ("offload-worker", "POST", Span.SPAN_KIND_CLIENT),
    ]

    def all_exported() -> bool:
        return all(collector.named(name, span_kind) for _, name, span_kind in expected)

    assert wait_until(all_exported, WAIT), f"{collector.spans}\n{stack.logs()}"
    chain = []
    for service, name, span_kind in expected:
        [span] = collector.named(name, span_kind)
        assert span.service == service, span
        chain.append(span)
    assert {span.trace_id for span in chain} == {TRACE_ID}
    assert [span.parent_id for span in chain] == [CALLER_SPAN_ID] + [span.span_id for span in chain[:-1]]
    _server, send, run, _send_hook, _delivery, post = chain
    assert run.links == (send.span_id,)
    assert send.attributes["messaging.message.id"] == run.attributes["messaging.message.id"] == job_id
    assert run.attributes["offload.job.name"] == "word_count"
    assert run.attributes["offload.job.attempt"] == 1
    assert run.attributes["offload.job.outcome"] == "finished"
    assert run.attributes["offload.request_id"] == "req-trace-1"
    assert post.attributes["http.response.status_code"] == 204
    assert headers["traceparent"] == f"00-{TRACE_ID}-{post.span_id}-01"

    # The worker's lines for the job carry the request id; so does the job's view.
    log = stack.processes["worker"].log_path

    def job_lines() -> list[dict[str, Any]]:
        lines = [json.loads(text) for text in log.read_text().splitlines() if text.startswith("{")]
        return [line for line in lines if line.get("job_id") == job_id]

    deadline = time.monotonic() + WAIT
    while len(job_lines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [(line["message"], line["request_id"]) for line in job_lines()] == [
        ("job started", "req-trace-1"),
        ("job ended", "req-trace-1"),
    ], stack.logs()
    assert stack.client.get(f"/jobs/{job_id}").json()["request_id"] == "req-trace-1"
