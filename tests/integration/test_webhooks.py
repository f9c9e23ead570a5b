"""A webhook received by an independent endpoint and its signature checked there."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.dev.harness import WEBHOOK_SECRET, Stack

pytestmark = pytest.mark.integration

Delivery = tuple[dict[str, str], bytes]


@pytest.fixture
def endpoint() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    """A receiver on loopback that knows nothing of offload but the documented recipe."""
    received: queue.Queue[Delivery] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.put((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/offload-hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def verified(header: str, body: bytes) -> bool:
    """The README's verification recipe, written out independently of service/worker/webhooks.py."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        WEBHOOK_SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300


def test_a_job_posts_its_end_to_the_callback_url(
    stack: Stack, endpoint: tuple[str, queue.Queue[Delivery]]
) -> None:
    url, received = endpoint
    response = stack.client.post("/jobs/word_count", json={"text": "x y z"}, params={"callback_url": url})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    headers, body = received.get(timeout=20)
    assert verified(headers["Offload-Signature"], body)
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
