"""A webhook received by an independent endpoint and its signature checked there."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.dev.harness import WEBHOOK_SECRET, Stack
from service.dev.receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def endpoint() -> Iterator[Receiver]:
    """A receiver on loopback that knows nothing of offload but the documented recipe."""
    with webhook_receiver("/offload-hook") as receiver:
        yield receiver


def verified(header: str, body: bytes) -> bool:
    """The README's verification recipe, written out independently of service/worker/webhooks.py."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def test_a_job_posts_its_end_to_the_callback_url(stack: Stack, endpoint: Receiver) -> None:
    response = stack.client.post(
        "/jobs/word_count", json={"text": "x y z"}, params={"callback_url": endpoint.url}
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    [post] = endpoint.wait(1, timeout=20)
    headers, body = post.headers, post.body
    assert verified(headers["offload-signature"], body)
    payload = json.loads(body)
    assert (payload["id"], payload["status"], payload["result"]["words"]) == (job_id, "finished", 3)

    def delivered() -> dict[str, Any]:
        callback: dict[str, Any] = stack.client.get(f"/jobs/{job_id}").json()["callback"]
        return callback

    deadline = time.monotonic() + 10
    while delivered()["status"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivered()["status"] == "delivered", stack.logs()
    assert delivered()["last_status_code"] == 204
