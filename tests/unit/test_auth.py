"""API keys and scopes: every route without a key, with a wrong one, and with each scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.connection import connect
from service.settings import ApiKey, ConfigError, Settings
from service.web.app import create_app

KEYS = {
    "reader": ("r" * 24, ["read"]),
    "writer": ("w" * 24, ["enqueue"]),
    "admin": ("a" * 24, ["admin"]),
    "narrow": ("n" * 24, ["enqueue", "read"]),
}
OPEN = {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def api_keys() -> list[dict[str, Any]]:
    keys = [{"name": name, "key": key, "scopes": scopes} for name, (key, scopes) in KEYS.items()]
    keys[-1]["jobs"] = ["word_count"]
    return keys


@pytest.fixture
def secured(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(api_keys=[ApiKey.model_validate(key) for key in api_keys()])


def as_key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


def every_route(client: TestClient) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI schema, with a made-up job id."""
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path.replace("{job_id}", "some-id"))
        for path, operations in paths.items()
        if path not in OPEN
        for method in operations
    ]


def test_every_route_but_health_wants_a_key(secured: TestClient) -> None:
    routes = every_route(secured)
    assert len(routes) > 20
    for method, path in routes:
        response = secured.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "API key" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/jobs/nope", "/jobs/nope/batch"])
def test_unknown_job_names_are_not_told_without_a_key(secured: TestClient, path: str) -> None:
    assert secured.post(path, json={}).status_code == 401


def test_a_wrong_key_is_401(secured: TestClient) -> None:
    response = secured.get("/jobs", headers={"Authorization": "Bearer " + "x" * 24})
    assert response.status_code == 401
    assert response.json() == {"detail": "this API key is not valid"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
def test_health_and_docs_stay_open(secured: TestClient, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_read_scope(secured: TestClient) -> None:
    headers = as_key("reader")
    for path in ("/jobs", "/queues", "/workers", "/catalog"):
        assert secured.get(path, headers=headers).status_code == 200, path
    assert secured.get("/jobs/nope", headers=headers).status_code == 404
    refused = secured.post("/jobs/word_count", json={"text": "a"}, headers=headers)
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this API key (reader) lacks the 'enqueue' scope"}
    assert secured.post("/jobs/nope/cancel", headers=headers).status_code == 403


def test_enqueue_scope(secured: TestClient) -> None:
    headers = as_key("writer")
    assert secured.post("/jobs/word_count", json={"text": "a"}, headers=headers).status_code == 202
    assert secured.post("/jobs/word_count/batch", json=[{"text": "a"}], headers=headers).status_code == 202
    assert secured.post("/jobs/nope", json={}, headers=headers).status_code == 404
    assert secured.get("/jobs", headers=headers).status_code == 403
    assert secured.delete("/jobs/some-id", headers=headers).status_code == 403


def test_admin_scope_may_do_everything(secured: TestClient) -> None:
    headers = as_key("admin")
    view = secured.post("/jobs/word_count", json={"text": "a"}, headers=headers).json()
    assert secured.get(f"/jobs/{view['id']}", headers=headers).status_code == 200
    assert secured.post(f"/jobs/{view['id']}/cancel", headers=headers).json()["status"] == "canceled"
    assert secured.delete(f"/jobs/{view['id']}", headers=headers).status_code == 204


def test_a_key_limited_to_some_jobs(secured: TestClient) -> None:
    headers = as_key("narrow")
    assert secured.post("/jobs/word_count", json={"text": "a"}, headers=headers).status_code == 202
    refused = secured.post("/jobs/count_primes", json={}, headers=headers)
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this API key (narrow) may not enqueue 'count_primes'"}
    assert secured.post("/jobs/count_primes/batch", json=[{}], headers=headers).status_code == 403


def test_the_x_api_key_header_works_too(secured: TestClient) -> None:
    assert secured.get("/jobs", headers={"X-API-Key": KEYS["reader"][0]}).status_code == 200


def test_keys_are_declared_in_openapi(secured: TestClient) -> None:
    schemes = secured.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}


def test_api_keys_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost")
    monkeypatch.setenv("API_KEYS", '[{"name": "ci", "key": "0123456789abcdef", "scopes": ["enqueue"]}]')
    [key] = Settings().api_keys
    assert key.name == "ci"
    assert key.key.get_secret_value() == "0123456789abcdef"
    assert "0123456789abcdef" not in repr(key)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "short", "key": "too-short", "scopes": ["read"]},
        {"name": "none", "key": "0123456789abcdef", "scopes": []},
        {"name": "odd", "key": "0123456789abcdef", "scopes": ["root"]},
    ],
)
def test_bad_keys_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ApiKey.model_validate(entry)


@pytest.mark.parametrize("production", [{"env": "production"}, {"dyno": "web.1"}])
def test_production_without_keys_refuses_to_start(production: dict[str, str]) -> None:
    settings = Settings(redis_url="redis://localhost", **production)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="API_KEYS is required in production"):
        create_app(settings)
    keyed = settings.model_copy(update={"api_keys": [ApiKey.model_validate(api_keys()[0])]})
    assert create_app(keyed).title == "offload"


def test_errors_never_carry_secrets(settings: Settings) -> None:
    """A Redis URL's password stays out of every answer, Redis down or not."""
    secret = settings.model_copy(
        update={"redis_url": "redis://:redis-password-not-for-answers@127.0.0.1:9/0"}
    )
    connection = connect(secret)
    with TestClient(create_app(secret, connection)) as down:
        answers = [
            down.get("/readyz"),
            down.post("/jobs/word_count", json={"text": "a"}),
            down.get("/jobs/x"),
        ]
    connection.close()
    for response in answers:
        assert response.status_code == 503
        assert "redis-password-not-for-answers" not in response.text
