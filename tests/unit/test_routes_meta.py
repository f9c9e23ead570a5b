from __future__ import annotations

from fastapi.testclient import TestClient

from service.catalog import load_catalog


def test_catalog_lists_every_job_with_its_defaults_and_schema(client: TestClient) -> None:
    response = client.get("/catalog")
    assert response.status_code == 200
    catalog = {entry["name"]: entry for entry in response.json()}
    assert list(catalog) == load_catalog().names()
    slow = catalog["very_long_task"]
    assert slow["queue"] == "default"
    assert slow["timeout"] == 3700
    assert slow["input_schema"]["properties"]["seconds"]["default"] == 5
    assert catalog["always_fails"]["retries"] == 2
    assert catalog["always_fails"]["retry_intervals"] == [1, 2]
    assert catalog["word_count"]["input_schema"]["required"] == ["text"]


def test_openapi_has_one_enqueue_operation_per_job_with_its_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for registered in load_catalog():
        operation = schema["paths"][f"/jobs/{registered.name}"]["post"]
        assert operation["operationId"] == f"enqueue_{registered.name}"
        assert operation["description"] == registered.description
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert registered.input_model.__name__ in str(body)
        assert {"queue", "timeout", "retries", "result_ttl"} <= {p["name"] for p in operation["parameters"]}
        assert "202" in operation["responses"]
    assert registered.input_model.__name__ in schema["components"]["schemas"]
    assert "/jobs/{name}" not in schema["paths"]
    assert client.get("/docs").status_code == 200


def test_healthz_answers_without_redis(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "redis": None}


def test_readyz_checks_redis(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "redis": "ok"}
