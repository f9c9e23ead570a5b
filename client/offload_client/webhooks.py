"""Checking a webhook delivery: `verify_webhook(secret, headers, body)`, offload's signature scheme.

offload signs each delivery with `Offload-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" under WEBHOOK_SECRET>`; a receiver recomputes it over the raw bytes it got.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

SIGNATURE_HEADER = "offload-signature"
JOB_ID_HEADER = "offload-job-id"
# Older signatures are refused, so a captured delivery cannot be replayed later.
TOLERANCE_SECONDS = 300

# Any headers: a dict, httpx's or Starlette's Headers, http.server's message, or (name, value) pairs.
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def verify_webhook(
    secret: str | bytes,
    headers: Headers,
    body: bytes | str,
    *,
    tolerance: float = TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """Whether `body` came from offload: its signature matches and is at most `tolerance` s old."""
    header = _header(headers, SIGNATURE_HEADER)
    if header is None:
        return False
    fields = dict(part.strip().split("=", 1) for part in header.split(",") if "=" in part)
    stamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or not signature:
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    raw = body.encode() if isinstance(body, str) else body
    expected = hmac.new(key, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _header(headers: Headers, name: str) -> str | None:
    """A header's first value, whatever the case of its name."""
    pairs = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") else headers
    return next((str(value) for key, value in pairs if key.lower() == name), None)
