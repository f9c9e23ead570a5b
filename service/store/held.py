"""What a job held back by its flow control shows: why it waits, under which key, until when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from service.flow import FlowControl, key_value
from service.schemas import HeldView


def held_view(
    flow: FlowControl | None, status: str, kwargs: dict[str, Any], hold: str | None
) -> HeldView | None:
    """A capped job waiting for a slot (RQ's `rate_limited`), or a queued one its rate limit holds
    (`hold`: the job's HOLD_FIELD, "held <eligible ms>"); None for any other job."""
    if flow is None:
        return None
    if status == "rate_limited" and flow.concurrency is not None:
        field = flow.concurrency_key
        key = key_value(kwargs, field) if field else None
        return HeldView(reason="concurrency", limit=flow.describe_concurrency(), key=key)
    if status == "queued" and flow.rate is not None and hold is not None and hold.startswith("held "):
        field = flow.rate_key
        key = key_value(kwargs, field) if field else None
        eligible = datetime.fromtimestamp(int(hold.split()[1]) / 1000, UTC)
        return HeldView(reason="rate_limit", limit=flow.describe_rate(), key=key, eligible_at=eligible)
    return None
