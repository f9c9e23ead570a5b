"""The client's typed errors, each from the app's own answer; and what is never retried."""

from __future__ import annotations

from collections.abc import Callable

import fakeredis
import pytest
from fastapi.testclient import TestClient

from offload_client import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    OffloadError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnavailableError,
    UnreachableError,
    ValidationError,
)
from service.settings import ApiKey
from tests.unit.client_bridge import QUICK_RETRY, AppBridge

READER = "r" * 24
ADMIN = "a" * 24


@pytest.fixture
def secured(make_client: Callable[..., TestClient]) -> AppBridge:
    keys = [
        ApiKey.model_validate({"name": "reader", "key": READER, "scopes": ["read"]}),
        ApiKey.model_validate({"name": "admin", "key": ADMIN, "scopes": ["admin"]}),
    ]
    return AppBridge(make_client(api_keys=keys, max_batch_size=2))


def test_401_without_a_key_and_403_without_the_scope(secured: AppBridge) -> None:
    with secured.client() as anonymous, pytest.raises(UnauthorizedError) as unauthorized:
        anonymous.jobs.word_count(text="x")
    assert unauthorized.value.status_code == 401
    assert "API key" in str(unauthorized.value.detail)
    with secured.client(READER) as reader, pytest.raises(ForbiddenError) as forbidden:
        reader.jobs.word_count(text="x")
    assert "lacks the 'enqueue' scope" in str(forbidden.value)
    with secured.client(ADMIN) as admin:
        assert admin.jobs.word_count(text="x").status == "queued"
    assert secured.requests[-1].headers["Authorization"] == f"Bearer {ADMIN}"


def test_404_for_an_unknown_job_id_and_an_unknown_job_name(bridge: AppBridge) -> None:
    with bridge.client() as offload:
        with pytest.raises(NotFoundError, match="no job with id 'nope'"):
            offload.get("nope")
        with pytest.raises(NotFoundError, match="known jobs: always_fails"):
            offload.enqueue("no_such_job", {})


def test_409_for_a_reused_key_and_for_a_state_that_forbids_the_action(bridge: AppBridge) -> None:
    with bridge.client() as offload:
        offload.jobs.word_count(text="first", idempotency_key="k-409")
        with pytest.raises(ConflictError, match="already used for a different request"):
            offload.jobs.word_count(text="second", idempotency_key="k-409")
        job = offload.jobs.word_count(text="x")
        with pytest.raises(ConflictError):
            offload.requeue(job)  # queued: nothing to requeue


def test_413_for_a_batch_over_the_limit(secured: AppBridge) -> None:
    with secured.client(ADMIN) as offload, pytest.raises(PayloadTooLargeError, match="at most 2 items"):
        offload.jobs.word_count_batch([{"text": "a"}, {"text": "b"}, {"text": "c"}])


def test_422_names_each_invalid_field_and_is_not_retried(bridge: AppBridge) -> None:
    with bridge.client() as offload, pytest.raises(ValidationError) as raised:
        offload.enqueue("word_count", {"top": 0}, {"retries": 99})
    locations = {tuple(error["loc"]) for error in raised.value.errors}
    assert {("body", "text"), ("body", "top"), ("query", "retries")} <= locations
    assert "body.text: Field required" in str(raised.value)
    assert len(bridge.requests) == 1


def test_503_when_redis_is_down_after_the_retries(
    bridge: AppBridge, fake_server: fakeredis.FakeServer
) -> None:
    fake_server.connected = False
    try:
        with (
            bridge.client() as offload,
            pytest.raises(UnavailableError, match="Redis is unavailable") as raised,
        ):
            offload.get("some-id")
    finally:
        fake_server.connected = True
    assert raised.value.status_code == 503
    assert len(bridge.requests) == QUICK_RETRY.attempts


def test_an_action_that_lost_its_answer_is_not_sent_again(bridge: AppBridge) -> None:
    with bridge.client() as offload:
        job = offload.jobs.word_count(text="x")
        bridge.faults = ["drop"]
        with pytest.raises(UnreachableError, match="after 1 try: RemoteProtocolError"):
            offload.cancel(job)
        assert offload.get(job).status == "canceled"  # it worked; a retry would have read 409
    assert [r.method for r in bridge.requests] == ["POST", "POST", "GET"]


def test_every_error_is_an_offload_error() -> None:
    for error in (UnauthorizedError, ForbiddenError, NotFoundError, ConflictError, PayloadTooLargeError):
        assert issubclass(error, OffloadError)
    assert issubclass(ValidationError, OffloadError)
    assert issubclass(UnreachableError, OffloadError)
