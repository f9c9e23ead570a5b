"""Contract fuzzing: schemathesis generates requests from the app's own OpenAPI schema.

Every operation, with a valid admin key, on fakeredis. No answer may be a 5xx, and every answer
must match the schema: a documented status code, its content type, its body schema. The run's
summary (tests/unit/conftest.py) counts the requests made and the answers by status class.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import fakeredis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.settings import ApiKey, Settings
from service.web.app import create_app

KEY = "contract-fuzzing-admin-key"
# Per operation; about 30 operations, so the default makes well over 1,000 requests.
EXAMPLES = int(os.environ.get("OFFLOAD_FUZZ_EXAMPLES", "50"))
STATUS_CLASSES: Counter[str] = Counter()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

_server = fakeredis.FakeServer()
app = create_app(
    Settings(
        redis_url="redis://fakeredis.invalid:6379/0",
        webhook_secret="contract-fuzzing-webhook-secret",
        api_keys=[ApiKey(name="fuzzer", key=KEY, scopes=["admin"])],
        max_stream_seconds=1,
        max_wait_seconds=1,
    ),
    fakeredis.FakeRedis(server=_server),
    async_connection=fakeredis.FakeAsyncRedis(server=_server),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_keeps_the_contract(case: schemathesis.Case[Any]) -> None:
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        checks=CHECKS,
    )
    STATUS_CLASSES[f"{response.status_code // 100}xx"] += 1
