"""The common enqueue, answered without FastAPI's per-request resolution of the route's parameters.

`POST /jobs/{name}` declares ten query options, a header, a body and an auth dependency; FastAPI
resolves every one of them on every request, about half of the route's CPU. Most enqueues use none
of the options: no query string, no Idempotency-Key, a JSON body. For those, this route's handler
authenticates, validates the body with the route's own body field, enqueues and renders the 202
itself. Every other request, and every request it would refuse, goes to the handler FastAPI built
from the same declaration, so the answers (errors included) and the OpenAPI schema are FastAPI's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from starlette.types import Scope

from service.catalog import RegisteredJob
from service.store.enqueue import EnqueueOptions, enqueue_fast
from service.store.views import new_job_view
from service.web.auth import authenticate_request, check_may_enqueue
from service.web.errors import OffloadError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
# What the enqueue options' dependency makes of a request without a query string.
DEFAULT_OPTIONS = EnqueueOptions()


class EnqueueRoute(APIRoute):
    """`POST /jobs/{name}` for one registered job (`enqueue_route` makes one class per job)."""

    registered: ClassVar[RegisteredJob[..., Any]]

    def get_route_handler(self) -> Handler:
        declared = super().get_route_handler()
        registered = self.registered
        body_field, response_field = self.body_field, self.response_field
        assert body_field is not None
        assert response_field is not None

        async def enqueue_plain(request: Request) -> Response:
            if not _plain(request.scope):
                return await declared(request)
            try:
                body = await request.body()
            except Exception as exc:  # a client gone, a body over the limit: no second read, so
                # FastAPI's own answer here (the body limit's middleware turns it into its 413)
                raise HTTPException(400, "There was an error parsing the body") from exc
            try:  # as FastAPI's handler parses it, which answers anything but a JSON value
                data = json.loads(body)
            except Exception:
                return await declared(request)
            try:
                check_may_enqueue(await authenticate_request(request), registered.name)
            except OffloadError:  # FastAPI's handler answers 401 or 403, or first a 422 for the body
                return await declared(request)
            params, errors = body_field.validate(data, {}, loc=("body",))
            if errors or params is None:  # FastAPI's 422 names each field its own way
                return await declared(request)
            state = request.app.state
            new = (await enqueue_fast(state.batcher.execute, registered, [params], DEFAULT_OPTIONS))[0]
            view = new_job_view(new, registered.name)
            response = Response(
                response_field.serialize_json(view), status.HTTP_202_ACCEPTED, media_type="application/json"
            )
            response.headers.raw.append((b"location", f"/jobs/{new.id}".encode()))
            return response

        return enqueue_plain


def enqueue_route(job: RegisteredJob[..., Any]) -> type[APIRoute]:
    """The route class of `POST /jobs/{job.name}`."""

    class Route(EnqueueRoute):
        registered = job

    return Route


def _plain(scope: Scope) -> bool:
    """No query string, no Idempotency-Key, a JSON body: nothing but the body and the key to read."""
    if scope["query_string"]:
        return False
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return False
        if name == b"content-type" and content_type is None:  # the first, as Starlette's headers.get
            content_type = value
    return content_type is not None and content_type.partition(b";")[0].strip().lower() == b"application/json"
