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

import copy
import email.message
import json
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic_core import PydanticUndefined
from starlette.datastructures import Headers, QueryParams

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
        status_code = self.status_code
        assert status_code is not None  # 202, declared by the routes

        async def handle(request: Request) -> Response:
            body = await _json_body(request)  # FastAPI parses the body before anything else
            check_may_enqueue(await authenticate_request(request), name)
            values: dict[str, Any] = {}
            errors: list[Any] = []
            for parameter, call, declared in parameters:  # as FastAPI solves them: a failed one is skipped
                found, failed = declared.validate(request)
                errors += failed
                if not failed:
                    assert call is not None
                    values[parameter] = await call(request=request, **found)
            found, failed = own.validate(request)
            values |= found
            errors += failed
            found, failed = await request_body_to_args([body_field], body, embed_body_fields=False)
            values |= found
            errors += failed
            if errors:
                raise RequestValidationError(errors, body=body)
            headers = Response()  # what the endpoint adds (Location, Idempotent-Replayed)
            result = await endpoint(request=request, response=headers, **values)
            response = Response(
                response_field.serialize_json(result), status_code, media_type="application/json"
            )
            response.headers.raw.extend(
                (key, value) for key, value in headers.headers.raw if key not in (b"content-length",)
            )
            return response

        return handle


def enqueue_route(job: RegisteredJob[..., Any]) -> type[APIRoute]:
    """The route class of `POST /jobs/{job.name}` and its batch."""

    class Route(EnqueueRoute):
        registered = job

    return Route


class _Parameters:
    """A dependency's query and header parameters, validated as FastAPI's `request_params_to_args`
    does. Most requests send no query string and none of the headers: that outcome is the same
    every time, so it is worked out once (FastAPI's defaults, copied for each request as FastAPI
    copies them)."""

    def __init__(self, dependant: Dependant) -> None:
        self.query, self.headers = dependant.query_params, dependant.header_params
        self.without_query = request_params_to_args(self.query, QueryParams(""))
        self.without_headers = request_params_to_args(self.headers, Headers())
        # Every name a header field could be read by: a request with none of them sends none.
        self.header_names = {
            spelling.lower().encode()
            for field in self.headers
            for name in (field.name, field.alias)
            for spelling in (name, name.replace("_", "-"))
        }

    def validate(self, request: Request) -> tuple[dict[str, Any], list[Any]]:
        if request.scope["query_string"]:
            query, query_errors = request_params_to_args(self.query, request.query_params)
        else:
            query, query_errors = _fresh(self.without_query)
        if any(name in self.header_names for name, _ in request.scope["headers"]):
            header, header_errors = request_params_to_args(self.headers, request.headers)
        else:
            header, header_errors = _fresh(self.without_headers)
        return query | header, query_errors + header_errors


def _fresh(outcome: tuple[dict[str, Any], list[Any]]) -> tuple[dict[str, Any], list[Any]]:
    """A copy of a worked-out outcome that the request may change without changing the next."""
    values, errors = outcome
    copied = {
        name: value if type(value) in _IMMUTABLE else copy.deepcopy(value) for name, value in values.items()
    }
    return copied, copy.deepcopy(errors) if errors else []


_IMMUTABLE = frozenset({type(None), bool, int, float, str, bytes})


async def _json_body(request: Request) -> Any:
    """The body as FastAPI's handler reads it: JSON for a JSON content type, else its bytes."""
    try:
        raw = await request.body()
    except Exception as exc:  # a client gone, a body over the limit: FastAPI's own answer here
        # (the body limit's middleware turns it into its 413)
        raise HTTPException(400, "There was an error parsing the body") from exc
    if not raw:
        return NO_BODY
    content_type = request.headers.get("content-type")
    if not content_type:  # FastAPI's strict content type: no type, no JSON
        return raw
    if content_type == "application/json":  # what email.message makes of it, without asking it
        return _parse(raw)
    message = email.message.Message()
    message["content-type"] = content_type
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
