"""The enqueue routes' own handler answers every request as FastAPI's handler of the same
declaration would: an app built with FastAPI's stock `APIRoute` for them is the reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.settings import ApiKey, Settings
from service.web.app import create_app
from service.web.routes import jobs as job_routes
from service.web.routes.enqueue_route import EnqueueRoute

KEYS = {
    "admin": ("a" * 24, ["admin"]),
    "reader": ("r" * 24, ["read"]),
    "narrow": ("n" * 24, ["enqueue"]),  # word_count only
}
# What differs between two answers to the same request: each job's own id and times, the request's id.
OWN = {"id", "url", "created_at", "enqueued_at", "scheduled_for", "request_id"}
DEPENDENCY = "0f8fad5b-d9cb-469f-a165-70867728950e"


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


def _json(content: bytes, **headers: str) -> dict[str, Any]:
    return {"content": content, "headers": {"content-type": "application/json", **headers}}


ADMIN = key("admin")
# path, httpx arguments: accepted requests, then every kind of refusal, in FastAPI's order.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/jobs/word_count", {"json": {"text": "to be or not", "top": 2}, "headers": ADMIN}),
    ("/jobs/very_long_task", {"json": {"seconds": 5}, "headers": ADMIN}),
    ("/jobs/very_long_task", {"headers": ADMIN}),  # an input of defaults may be omitted
    ("/jobs/very_long_task", _json(b"null", **ADMIN)),
    (
        "/jobs/word_count",
        _json(b'{"text": "a"}', **{"content-type": "Application/JSON; charset=utf-8"}, **ADMIN),
    ),
    ("/jobs/word_count", {"json": {"text": "a"}, "headers": {"X-API-Key": KEYS["narrow"][0]}}),
    (
        "/jobs/word_count?queue=high&timeout=30&retries=2&result_ttl=60",
        {"json": {"text": "a"}, "headers": ADMIN},
    ),
    ("/jobs/word_count?at_front=true&delay=60", {"json": {"text": "a"}, "headers": ADMIN}),
    ("/jobs/word_count?wait=0", {"json": {"text": "a"}, "headers": ADMIN}),
    ("/jobs/word_count/batch", {"json": [{"text": "a"}, {"text": "b c"}], "headers": ADMIN}),
    ("/jobs/word_count/batch?queue=low", {"json": [{"text": "a"}], "headers": ADMIN}),
    # refusals
    ("/jobs/word_count", {"json": {"text": "a"}}),  # no key
    ("/jobs/word_count", {"json": {"text": "a"}, "headers": {"Authorization": "Bearer nope"}}),
    ("/jobs/word_count", {"json": {"text": "a"}, "headers": {"Authorization": "Basic " + "a" * 24}}),
    ("/jobs/word_count", {"json": {"text": "a"}, "headers": key("reader")}),
    ("/jobs/very_long_task", {"json": {"seconds": 1}, "headers": key("narrow")}),
    ("/jobs/word_count/batch", {"json": [{"text": "a"}], "headers": key("reader")}),
    ("/jobs/word_count", {"json": {"top": 3}, "headers": ADMIN}),  # text is required
    ("/jobs/word_count", {"json": {"text": 5, "top": "x"}, "headers": ADMIN}),
    ("/jobs/word_count", {"json": ["text"], "headers": ADMIN}),
    ("/jobs/word_count", {"headers": ADMIN}),  # no body
    ("/jobs/word_count", _json(b"null", **ADMIN)),
    ("/jobs/word_count", _json(b"", **ADMIN)),
    ("/jobs/word_count", _json(b"{nope", **ADMIN)),
    ("/jobs/word_count", _json(b"{nope")),  # the body's error comes before the missing key's
    ("/jobs/word_count", _json(b"\x80", **ADMIN)),  # not UTF-8: a 400
    ("/jobs/word_count", {"content": b'{"text": "a"}', "headers": {"content-type": "text/plain", **ADMIN}}),
    ("/jobs/word_count", {"content": b'{"text": "a"}', "headers": ADMIN}),  # no content type
    ("/jobs/word_count?queue=nope&timeout=0", {"json": {"text": 5}, "headers": ADMIN}),  # all three listed
    ("/jobs/word_count?delay=5&at=2030-01-01T00:00:00Z", {"json": {"text": 5}, "headers": ADMIN}),
    ("/jobs/word_count?depends_on=nope", {"json": {"text": "a"}, "headers": ADMIN}),
    (f"/jobs/word_count?depends_on={DEPENDENCY}", {"json": {"text": "a"}, "headers": ADMIN}),  # unknown
    ("/jobs/word_count?callback_url=ftp://x", {"json": {"text": "a"}, "headers": ADMIN}),
    ("/jobs/word_count?wait=-1", {"json": {"text": "a"}, "headers": ADMIN}),
    ("/jobs/word_count?wait=1000000", {"json": {"text": "a"}, "headers": ADMIN}),
    ("/jobs/word_count", {"json": {"text": "a"}, "headers": {"Idempotency-Key": "", **ADMIN}}),
    ("/jobs/word_count/batch", {"json": [], "headers": ADMIN}),
    ("/jobs/word_count/batch", {"json": [{"text": "a"}, {"top": 1}], "headers": ADMIN}),
    ("/jobs/word_count/batch", {"json": {"text": "a"}, "headers": ADMIN}),
]


Apps = tuple[TestClient, TestClient]


@pytest.fixture
def apps(make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch) -> Apps:
    """The app, and the same app with FastAPI's stock route class for the enqueue routes."""
    keys = [{"name": name, "key": value, "scopes": scopes} for name, (value, scopes) in KEYS.items()]
    keys[-1]["jobs"] = ["word_count"]
    api_keys = [ApiKey.model_validate(entry) for entry in keys]
    ours = make_client(api_keys=api_keys)
    monkeypatch.setattr(job_routes, "enqueue_route", lambda job: APIRoute)
    stock = make_client(api_keys=api_keys)
    return ours, stock


def _comparable(body: Any) -> Any:
    if isinstance(body, list):
        return [_comparable(item) for item in body]
    if isinstance(body, dict):
        return {k: _comparable(v) for k, v in body.items() if k not in OWN}
    return body


@pytest.mark.parametrize(("path", "kwargs"), REQUESTS)
def test_every_answer_is_fastapis(
    apps: tuple[TestClient, TestClient], path: str, kwargs: dict[str, Any]
) -> None:
    _same_answer(*apps, path, kwargs)


def test_later_requests_to_one_app_are_answered_as_the_first(apps: Apps) -> None:
    """Every request in turn, twice, to one app: the outcome the handler keeps for requests that
    send no option and no key is the one FastAPI works out anew each time, whatever came between."""
    for path, kwargs in REQUESTS * 2:
        _same_answer(*apps, path, kwargs)


def _same_answer(ours: TestClient, stock: TestClient, path: str, kwargs: dict[str, Any]) -> None:
    mine, theirs = ours.post(path, **kwargs), stock.post(path, **kwargs)
    assert mine.status_code == theirs.status_code, (mine.text, theirs.text)
    assert _comparable(mine.json()) == _comparable(theirs.json())
    # The same headers in the same order, each answer's own job id and request id aside.
    assert [name for name, _ in mine.headers.items()] == [name for name, _ in theirs.headers.items()]
    for header in ("content-type", "www-authenticate", "idempotent-replayed"):
        assert mine.headers.get(header) == theirs.headers.get(header)
    if mine.status_code == 202 and "location" in mine.headers:
        assert mine.headers["location"] == f"/jobs/{mine.json()['id']}"


def test_a_replay_is_fastapis_too(apps: Apps) -> None:
    for client in apps:
        headers = {"Idempotency-Key": f"order-{id(client)}", **ADMIN}
        first = client.post("/jobs/word_count", json={"text": "a"}, headers=headers)
        again = client.post("/jobs/word_count", json={"text": "a"}, headers=headers)
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = client.post("/jobs/word_count", json={"text": "b"}, headers=headers)
        assert other.status_code == 409, other.text


def _enqueue_routes(client: TestClient) -> list[APIRoute]:
    routes: list[Any] = client.app.routes  # type: ignore[attr-defined]
    return [
        route
        for route in routes
        if isinstance(route, APIRoute) and route.path.startswith("/jobs/") and "{name}" not in route.path
        if "POST" in (route.methods or ())
    ]


def test_the_enqueue_routes_have_only_their_own_handler(apps: Apps) -> None:
    ours, stock = apps
    assert _enqueue_routes(ours)
    assert all(isinstance(route, EnqueueRoute) for route in _enqueue_routes(ours))
    assert not any(isinstance(route, EnqueueRoute) for route in _enqueue_routes(stock))  # the reference


def test_the_openapi_schema_is_fastapis(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = create_app(settings).openapi()
    monkeypatch.setattr(job_routes, "enqueue_route", lambda job: APIRoute)
    assert create_app(settings).openapi() == ours
