"""The handler of `POST /jobs/{name}` and `POST /jobs/{name}/batch`: the routes' only handler.

Each enqueue route declares its options (query parameters), its Idempotency-Key header, its body
(the job's input model) and its auth as FastAPI parameters, so the OpenAPI schema is FastAPI's.
FastAPI's own handler would resolve each of them anew on every request through its dependency
solver, about half of the route's CPU; this one reads them in a fixed order with FastAPI's own
field validators, and answers what FastAPI's would: the same errors for the same requests (a
body that is not JSON, then 401/403, then the options' and the body's 422s), the same 202.
tests/unit/test_enqueue_route.py holds it against FastAPI's handler over the same declaration.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Callable, Coroutine
from dataclasses import fields
from datetime import datetime
from typing import Any, ClassVar

from fastapi import HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.datastructures import MutableHeaders

from service.catalog import RegisteredJob
from service.web.auth import authenticate_request, check_may_enqueue

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = Callable[..., Coroutine[Any, Any, Any]]
# FastAPI's "no body" (its `Undefined`): the input model's defaults, if it has any.
NO_BODY: Any = PydanticUndefined


class EnqueueRoute(APIRoute):
    """An enqueue route of one registered job (`enqueue_route` makes one class per job)."""

    registered: ClassVar[RegisteredJob[..., Any]]

    def get_route_handler(self) -> Handler:
        name = self.registered.name
        endpoint: Endpoint = self.endpoint
        body_field, response_field = self.body_field, self.response_field
        assert body_field is not None
        assert response_field is not None
        # The endpoint's parameters that are dependencies (its options, its key), in order.
        parameters = [
            (sub.name, sub.call, _Parameters(sub))
            for sub in self.dependant.dependencies
            if sub.name is not None
        ]
        own = _Parameters(self.dependant)  # the endpoint's own (`wait`)
        header_names = own.header_names.union(*(declared.header_names for _, _, declared in parameters))
        status_code = self.status_code
        assert status_code is not None  # 202, declared by the routes
        plain: dict[str, Any] | None = None  # the parameters of a request that sends none of them

        async def parameter_values(request: Request) -> dict[str, Any]:
            values: dict[str, Any] = {}
            errors: list[Any] = []
            for parameter, call, declared in parameters:  # as FastAPI solves them: a failed one is skipped
                found, failed = declared.validate(request)
                errors += failed
                if not failed:
                    assert call is not None
                    values[parameter] = await call(request=request, **found)
            found, failed = own.validate(request)
            if errors or failed:
                raise _Invalid(errors + failed)
            return values | found

        async def handle(request: Request) -> Response:
            nonlocal plain
            content_type, declared = None, False  # one look at the headers for both
            for key, value in request.scope["headers"]:
                if key == b"content-type":
                    content_type = value if content_type is None else content_type  # the first
                if key in header_names:
                    declared = True
            body = await _json_body(request, content_type)  # FastAPI parses the body first
            check_may_enqueue(await authenticate_request(request), name)
            errors: list[Any] = []
            sends_none = not (request.scope["query_string"] or declared)
            if sends_none and plain is not None:
                values = plain
            else:
                try:
                    values = await parameter_values(request)
                except _Invalid as invalid:
                    values, errors = {}, invalid.errors
                else:  # what every later request that sends none gets, if nothing can change it
                    if sends_none and all(map(_immutable, values.values())):
                        plain = values
            found, failed = await request_body_to_args([body_field], body, embed_body_fields=False)
            if errors or failed:
                raise RequestValidationError(errors + failed, body=body)
            headers = _Headers()  # what the endpoint adds (Location, Idempotent-Replayed, a 200)
            result = await endpoint(request=request, response=headers, **values, **found)
            response = Response(
                response_field.serialize_json(result),
                headers.status_code or status_code,  # as FastAPI honours its sub-response's
                media_type="application/json",
            )
            response.headers.raw.extend(headers.headers.raw)
            return response

        return handle


def enqueue_route(job: RegisteredJob[..., Any]) -> type[APIRoute]:
    """The route class of `POST /jobs/{job.name}` and its batch."""

    class Route(EnqueueRoute):
        registered = job

    return Route


class _Parameters:
    """A dependency's query and header parameters, validated as FastAPI's `request_params_to_args`
    validates them."""

    def __init__(self, dependant: Dependant) -> None:
        self.query, self.headers = dependant.query_params, dependant.header_params
        # Every name a header field could be read by: a request with none of them sends none.
        self.header_names = {
            spelling.lower().encode()
            for field in self.headers
            for name in (field.name, field.alias)
            for spelling in (name, name.replace("_", "-"))
        }

    def validate(self, request: Request) -> tuple[dict[str, Any], list[Any]]:
        query, query_errors = request_params_to_args(self.query, request.query_params)
        header, header_errors = request_params_to_args(self.headers, request.headers)
        return query | header, query_errors + header_errors


class _Invalid(Exception):
    def __init__(self, errors: list[Any]) -> None:
        self.errors = errors


class _Headers:
    """What the endpoint adds to its response (Location, Idempotent-Replayed) and the status it
    sets (a unique job's duplicate: 200): a `Response`'s headers and status without the rest of one."""

    __slots__ = ("headers", "status_code")

    def __init__(self) -> None:
        self.headers = MutableHeaders()
        self.status_code: int | None = None


def _immutable(value: Any) -> bool:
    """Whether a parameter's value can be shared by requests: nothing a request does changes it."""
    if type(value) in _IMMUTABLE:
        return True
    if isinstance(value, tuple):
        return all(map(_immutable, value))
    params = getattr(type(value), "__dataclass_params__", None)
    return bool(params and params.frozen) and all(_immutable(getattr(value, f.name)) for f in fields(value))


_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes, datetime})


async def _json_body(request: Request, content_type: bytes | None) -> Any:
    """The body as FastAPI's handler reads it: JSON for a JSON content type, else its bytes.

    `content_type` is the request's first Content-Type header, as `request.headers` would give it."""
    try:
        raw = await request.body()
    except Exception as exc:  # a client gone, a body over the limit: FastAPI's own answer here
        # (the body limit's middleware turns it into its 413)
        raise HTTPException(400, "There was an error parsing the body") from exc
    if not raw:
        return NO_BODY
    if not content_type:  # FastAPI's strict content type: no type, no JSON
        return raw
    if content_type == b"application/json":  # what email.message makes of it, without asking it
        return _parse(raw)
    message = email.message.Message()
    message["content-type"] = content_type.decode("latin-1")  # as Starlette decodes headers
    subtype = message.get_content_subtype()
    if message.get_content_maintype() != "application" or not (
        subtype == "json" or subtype.endswith("+json")
    ):
        return raw
    return _parse(raw)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
        raise RequestValidationError([error | {"ctx": {"error": exc.msg}}], body=exc.doc) from exc
    except ValueError as exc:  # not UTF-8, -16 or -32: FastAPI's answer to any other failure
        raise HTTPException(400, "There was an error parsing the body") from exc
