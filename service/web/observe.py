"""Each HTTP request observed once: a request id, one log line, the HTTP metrics (and, tracing on, a span).

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which would buffer the
event streams and run the app in another task (where the request id would not be set).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import tracing
from service.logs import fields, request_id_var
from service.web.metrics import UNMATCHED, Metrics

log = logging.getLogger("offload.http")

REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is kept when it is a plain token: Heroku's router and most proxies send a UUID.
# Anything else (too long, spaces, control characters) could forge or break log lines: replaced.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9+/=._:-]{1,200}")


def request_id(scope: Scope) -> str:
    """The client's (or proxy's) `X-Request-ID` when it is sane, else a new one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given: str = value.decode("latin-1").strip()
            if SANE_REQUEST_ID.fullmatch(given):
                return given
            break
    return str(uuid.uuid4())


def route_template(scope: Scope, arrived: Scope) -> str:
    """The matched route's path template (`/jobs/{job_id}`), never the raw path: bounded labels.

    FastAPI names the route it ran in the scope for its own routes only; Starlette's (the docs,
    the dashboard's mount) are found again by matching the scope as it `arrived`, before a mount
    rewrote its root path. `path_format` drops converters; a mount's is `/prefix/{path}`. A request
    answered without a route (a 404, or a body refused for its size before routing) is `unmatched`.
    """
    route = scope.get("route") or _starlette_route(arrived)
    path: object = getattr(route, "path_format", None)
    return path if isinstance(path, str) and path else UNMATCHED


def _starlette_route(scope: Scope) -> BaseRoute | None:
    routes: list[object] = list(getattr(getattr(scope.get("app"), "router", None), "routes", ()))
    for route in routes:
        if (
            isinstance(route, Route | Mount)
            and not isinstance(route, APIRoute)  # FastAPI's own name themselves in the scope
            and route.matches(scope)[0] == Match.FULL
        ):
            return route
    return None


class RequestObserver:
    """Give each request an id (echoed in `X-Request-ID`), then log it and count it when it ends."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = dict(scope)  # routing adds to the scope, and a mount rewrites its root path
        rid = request_id(scope)
        token = request_id_var.set(rid)  # every line logged while serving it carries its id
        status = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method, route = scope["method"], route_template(scope, arrived)
            self.metrics.observe_request(method, route, status, seconds)
            log.info(
                "request",
                extra=fields(
                    method=method,
                    route=route,
                    path=scope["path"],  # without the query string, which may carry a callback URL
                    status=status,
                    duration_ms=round(seconds * 1000, 1),
                    request_id=rid,
                ),
            )
            request_id_var.reset(token)


def trace_requests(app: FastAPI) -> None:
    """Tracing on: a SERVER span for each request, continuing the client's `traceparent`.

    OpenTelemetry's FastAPI instrumentation, outermost (OTEL_PYTHON_FASTAPI_EXCLUDED_URLS leaves
    paths out), without its spans for each ASGI message sent and received: three spans a request
    where one says it all.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=tracing.provider(), exclude_spans=["receive", "send"]
    )
