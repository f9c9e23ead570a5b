"""The app on fakeredis behind an httpx transport, so the client (on the real httpx) calls it as
it calls a server, and faults injected between the two: a refused connection, an answer lost after
the app did the work, a 503."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import httpx
from fastapi.testclient import TestClient

from offload_client import AsyncClient, Client, Retry

BASE_URL = "http://offload.test"
# Fast and certain: tests count tries, not seconds.
QUICK_RETRY = Retry(deadline=5.0, attempts=10, first_delay=0.001, max_delay=0.01, jitter=False)
Fault = Literal["refuse", "drop", "503"]
# The request headers a transport sets for itself; the app gets the rest as the client sent them.
HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass
class AppBridge:
    """An httpx handler that passes each request to the app, unless a queued fault says otherwise."""

    app: TestClient
    faults: list[Fault] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if fault == "refuse":  # the app never sees it
            raise httpx.ConnectError("connection refused", request=request)
        if fault == "503":
            return httpx.Response(503, json={"detail": "Redis is unavailable"}, headers={"Retry-After": "0"})
        answer = self.app.request(
            request.method,
            request.url.raw_path.decode(),
            content=request.content,
            headers=[(k, v) for k, v in request.headers.multi_items() if k.lower() not in HOP_HEADERS],
        )
        if fault == "drop":  # the app did the work; the answer is lost on the way back
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in HOP_HEADERS]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)

    def keys(self) -> list[str | None]:
        """The Idempotency-Key of each request, in order."""
        return [request.headers.get("Idempotency-Key") for request in self.requests]

    def client(
        self, api_key: str | None = None, *, retry: Retry = QUICK_RETRY, wait_slice: float = 20
    ) -> Client:
        """A blocking client of the app through this bridge."""
        return Client(
            BASE_URL, api_key, retry=retry, wait_slice=wait_slice, transport=httpx.MockTransport(self)
        )

    def async_client(self, api_key: str | None = None, *, retry: Retry = QUICK_RETRY) -> AsyncClient:
        """An asyncio client of the app through this bridge (the app runs on the TestClient's loop)."""
        return AsyncClient(BASE_URL, api_key, retry=retry, transport=httpx.MockTransport(self))
