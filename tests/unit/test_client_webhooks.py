"""`verify_webhook` accepts what the worker signs (service/worker/webhooks.py) and nothing else."""

from __future__ import annotations

import time

import httpx

from offload_client import verify_webhook
from service.worker.webhooks import SIGNATURE_HEADER, sign

SECRET = "s3cret-webhook-key"
BODY = b'{"id":"0b7a","status":"finished"}'


def signed(at: float | None = None, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(secret, int(time.time() if at is None else at), body)}


def test_a_delivery_signed_by_the_worker_verifies() -> None:
    assert verify_webhook(SECRET, signed(), BODY)
    assert verify_webhook(SECRET.encode(), signed(), BODY.decode())


def test_the_header_is_found_whatever_its_case_and_container() -> None:
    header = signed()[SIGNATURE_HEADER]
    assert verify_webhook(SECRET, {"offload-signature": header}, BODY)
    assert verify_webhook(SECRET, httpx.Headers({"OFFLOAD-SIGNATURE": header}), BODY)
    assert verify_webhook(SECRET, [("Content-Type", "application/json"), ("Offload-Signature", header)], BODY)


def test_a_changed_body_another_secret_or_an_old_signature_is_refused() -> None:
    assert not verify_webhook(SECRET, signed(), BODY + b" ")
    assert not verify_webhook("another-secret", signed(), BODY)
    assert not verify_webhook(SECRET, signed(at=time.time() - 301), BODY)
    assert not verify_webhook(SECRET, signed(at=time.time() + 301), BODY)
    assert verify_webhook(SECRET, signed(at=1_000), BODY, now=1_200)


def test_a_missing_or_malformed_header_is_refused() -> None:
    header = signed()[SIGNATURE_HEADER]
    for bad in ({}, {SIGNATURE_HEADER: ""}, {SIGNATURE_HEADER: "v1=abc"}, {SIGNATURE_HEADER: "t=x,v1=ab"}):
        assert not verify_webhook(SECRET, bad, BODY)
    assert not verify_webhook(SECRET, {SIGNATURE_HEADER: header.split(",v1=")[0]}, BODY)
