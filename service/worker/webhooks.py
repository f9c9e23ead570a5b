"""Webhooks: when a job enqueued with a `callback_url` ends, a job of its own POSTs the final view.

RQ calls `on_success`/`on_failure`/`on_stopped` in the worker as the job ends (service/store/enqueue.py
attaches them); they only enqueue `deliver_callback` on the `webhooks` queue, so a slow or dead
endpoint never holds the worker that ran the job. The delivery is signed (HMAC-SHA256 over the
timestamp and the body, under WEBHOOK_SECRET), retried with backoff, and its outcome is kept in
the job's `callback` field.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from typing import Any

from redis import Redis
from rq.job import Job, get_current_job

from service import tracing
from service.catalog import Registry
from service.serializer import JSON
from service.settings import load_settings
from service.store.layout import WEBHOOK_QUEUE
from service.store.views import fetch_job, job_view, wait_for_end

SIGNATURE_HEADER = "Offload-Signature"
DELIVERY_TIMEOUT = 10
# RQ calls a job's callback before it saves the job's end; the delivery waits that long for it.
END_WAIT = 10
# A receiver should refuse signatures older than this (replayed requests).
SIGNATURE_TOLERANCE = 300

# Jobs offload runs for itself: workers resolve them, the API offers them to nobody.
internal = Registry()


class DeliveryError(RuntimeError):
    """The endpoint did not answer 2xx; RQ retries the delivery with backoff."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Offload-Signature` header: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, refuse old ones."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not fields.get("t", "").isdigit() or "v1" not in fields:
        return False
    timestamp = int(fields["t"])
    if abs((time.time() if now is None else now) - timestamp) > SIGNATURE_TOLERANCE:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields['v1']}")


def on_success(job: Job, connection: Redis, result: Any, *args: Any, **kwargs: Any) -> None:
    _schedule_delivery(job, connection)


def on_failure(job: Job, connection: Redis, *exc_info: Any, **kwargs: Any) -> None:
    if job.retries_left:  # RQ runs it again: only its final end is announced
        return
    _schedule_delivery(job, connection)


def on_stopped(job: Job, connection: Redis, *args: Any, **kwargs: Any) -> None:
    _schedule_delivery(job, connection)


def _schedule_delivery(job: Job, connection: Redis) -> None:
    deliver_callback.enqueue(connection, job_id=job.id)


@internal.job(
    queue=WEBHOOK_QUEUE, timeout=60, retries=8, retry_intervals=(5, 15, 60, 300, 900, 1800, 3600, 7200)
)
def deliver_callback(job_id: str) -> dict[str, Any]:
    """POST a job's final view to its callback_url, signed, and record the outcome on the job."""
    delivery = get_current_job()
    assert delivery is not None, "deliver_callback runs in a worker"
    connection = delivery.connection
    job = wait_for_end(connection, fetch_job(connection, job_id), END_WAIT)
    callback: dict[str, Any] = dict(job.meta.get("callback") or {})
    catalog: Registry = getattr(type(delivery), "registry")  # noqa: B009  (OffloadJob's, set by build_worker)
    body = job_view(job, catalog).model_dump_json().encode()
    secret = load_settings().webhook_secret
    if secret is None:
        raise DeliveryError("WEBHOOK_SECRET is not set on the worker; cannot sign the delivery")
    # Tracing on: a CLIENT span, child of this delivery's run, whose `traceparent` the POST carries.
    with tracing.calling("POST", callback["url"]) as call:
        request = urllib.request.Request(  # noqa: S310  (the URL was checked to be http(s) on enqueue)
            callback["url"],
            data=body,
            method="POST",
            headers={
                **call.headers,
                "Content-Type": "application/json",
                "User-Agent": "offload-webhooks",
                "Offload-Job-Id": job.id,
                SIGNATURE_HEADER: sign(secret.get_secret_value(), int(time.time()), body),
            },
        )
        status_code, error = _post(request)
        call.answered(status_code)
    delivered = status_code is not None and 200 <= status_code < 300
    callback.update(
        attempts=int(callback.get("attempts", 0)) + 1,
        last_status_code=status_code,
        last_error=error,
        status="delivered" if delivered else ("retrying" if delivery.retries_left else "failed"),
        delivered_at=time.time() if delivered else None,
    )
    _save_callback(connection, job.id, callback)
    if not delivered:
        raise DeliveryError(f"{callback['url']} answered {status_code or error}")
    return {"status_code": status_code}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would send the signed body somewhere the client did not name.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(request: urllib.request.Request) -> tuple[int | None, str | None]:
    """The endpoint's status code, or the reason there is none."""
    try:
        with _opener.open(request, timeout=DELIVERY_TIMEOUT) as response:
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))


def _save_callback(connection: Redis, job_id: str, callback: dict[str, Any]) -> None:
    """Write only the `callback` entry of the job's meta, reading the rest fresh."""
    job = Job.fetch(job_id, connection=connection, serializer=JSON)
    job.meta["callback"] = callback
    job.save_meta()
