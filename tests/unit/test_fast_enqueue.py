"""The plain enqueue's own handler: it takes only plain requests, and answers as FastAPI's would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.settings import ApiKey
from service.web.routes import jobs as job_routes

KEYS = {
    "admin": ("a" * 24, ["admin"]),
    "reader": ("r" * 24, ["read"]),
    "narrow": ("n" * 24, ["enqueue"]),  # word_count only
}
# A query option at its default: the same request, but the declared handler answers it.
DECLARED = "?at_front=false"


@pytest.fixture
def secured(make_client: Callable[..., TestClient]) -> TestClient:
    keys = [{"name": name, "key": key, "scopes": scopes} for name, (key, scopes) in KEYS.items()]
    keys[-1]["jobs"] = ["word_count"]
    return make_client(api_keys=[ApiKey.model_validate(key) for key in keys])


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


def test_a_plain_enqueue_never_reaches_the_declared_endpoint(
    secured: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any) -> None:
        raise AssertionError("the declared endpoint ran")

    monkeypatch.setattr(job_routes, "enqueue_fast", refuse)
    response = secured.post("/jobs/word_count", json={"text": "a b"}, headers=key("admin"))
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("name", "body"),
    [("word_count", {"text": "to be or not", "top": 2}), ("very_long_task", {"seconds": 5})],
)
def test_the_plain_answer_is_the_declared_one(secured: TestClient, name: str, body: Any) -> None:
    plain = secured.post(f"/jobs/{name}", json=body, headers=key("admin"))
    declared = secured.post(f"/jobs/{name}{DECLARED}", json=body, headers=key("admin"))
    assert plain.status_code == declared.status_code == 202
    # The same headers, in the same order, each answer's own job id and request id aside.
    assert [name for name, _ in plain.headers.items()] == [name for name, _ in declared.headers.items()]
    assert plain.headers["location"] == f"/jobs/{plain.json()['id']}"
    assert plain.headers["content-type"] == declared.headers["content-type"] == "application/json"
    own = {"id", "url", "created_at", "enqueued_at"}
    assert {k: v for k, v in plain.json().items() if k not in own} == {
        k: v for k, v in declared.json().items() if k not in own
    }
    assert plain.json() == secured.get(plain.headers["location"], headers=key("admin")).json()


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/jobs/word_count", {"json": {"text": "a"}}),  # no key
        ("/jobs/word_count", {"json": {"text": "a"}, "headers": {"Authorization": "Bearer nope"}}),
        ("/jobs/word_count", {"json": {"text": "a"}, "headers": {"Authorization": "Basic " + "a" * 24}}),
        ("/jobs/word_count", {"json": {"text": "a"}, "headers": key("reader")}),
        ("/jobs/very_long_task", {"json": {"seconds": 1}, "headers": key("narrow")}),
        ("/jobs/word_count", {"json": {"top": 3}, "headers": key("admin")}),  # text is required
        ("/jobs/word_count", {"json": {"text": 5, "top": "x"}, "headers": key("admin")}),
        ("/jobs/word_count", {"json": ["text"], "headers": key("admin")}),
        ("/jobs/word_count", {"json": None, "headers": key("admin")}),  # no body
        (
            "/jobs/word_count",
            {"content": b"null", "headers": {"content-type": "application/json", **key("admin")}},
        ),
        (
            "/jobs/word_count",
            {"content": b"", "headers": {"content-type": "application/json", **key("admin")}},
        ),
        (
            "/jobs/word_count",
            {"content": b"{nope", "headers": {"content-type": "application/json", **key("admin")}},
        ),
        ("/jobs/word_count", {"content": b"{nope", "headers": {"content-type": "application/json"}}),
        (
            "/jobs/word_count",
            {"content": b'{"text": "a"}', "headers": {"content-type": "text/plain", **key("admin")}},
        ),
        ("/jobs/word_count", {"content": b'{"text": "a"}', "headers": key("admin")}),  # no content type
    ],
)
def test_every_refusal_is_the_declared_one(secured: TestClient, path: str, kwargs: dict[str, Any]) -> None:
    plain = secured.post(path, **kwargs)
    declared = secured.post(path + DECLARED, **kwargs)
    assert plain.status_code == declared.status_code
    assert plain.status_code in (401, 403, 422), plain.text
    assert plain.json() == declared.json()
    assert plain.headers.get("www-authenticate") == declared.headers.get("www-authenticate")


def test_an_input_with_only_defaults_may_still_be_omitted_or_null(secured: TestClient) -> None:
    json_null = {"content": b"null", "headers": {"content-type": "application/json", **key("admin")}}
    for kwargs in ({"headers": key("admin")}, {"json": {}, "headers": key("admin")}, json_null):
        response = secured.post("/jobs/very_long_task", **kwargs)
        assert response.status_code == 202, response.text
        assert response.json()["input"] == {"seconds": 5.0}


def test_json_content_types_with_parameters_are_plain(secured: TestClient) -> None:
    headers = {"content-type": "Application/JSON; charset=utf-8", **key("admin")}
    response = secured.post("/jobs/word_count", content=b'{"text": "a"}', headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["input"] == {"text": "a", "top": 10}


def test_the_x_api_key_header_enqueues_too(secured: TestClient) -> None:
    response = secured.post("/jobs/word_count", json={"text": "a"}, headers={"X-API-Key": KEYS["narrow"][0]})
    assert response.status_code == 202, response.text
