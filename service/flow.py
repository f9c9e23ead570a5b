"""Flow control declared next to a job: rate limits, concurrency caps, and `retry_after` from inside one.

`@job(rate_limit="100/minute", rate_key="account_id", concurrency=5, concurrency_key="customer_id")`
is checked here when the job is declared, so a malformed rate or a key that is not a parameter of
the job's input fails at import, not on a worker. Enforcement lives with Redis: concurrency caps are
RQ's own `RateLimit` (written by the enqueue's script, service/store/write.py), rate limits offload's
sliding-window log, checked by the take script (service/store/rates.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import BaseModel

# "100/minute", "5/hour", "10/second" (a plural and "sec", "min", "hr" too).
RATE_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(second|sec|minute|min|hour|hr)s?\s*")
_UNITS = {"second": 1, "sec": 1, "minute": 60, "min": 60, "hour": 3600, "hr": 3600}
_UNIT_NAMES = {1: "second", 60: "minute", 3600: "hour"}
# A start is counted when a worker takes the job; the job's own code starts a few milliseconds later,
# more on a busy machine, and not by the same delay each time. So that windows measured from the
# jobs' own start times hold too, the take enforces each window this much longer.
RATE_SLACK_MS = 100
# A key value longer than this is hashed: it names Redis keys, one per value.
KEY_VALUE_MAX = 100
# How often one job may ask to run later (`retry_after`) before it fails: a job that always gets
# throttled must end some day.
RETRY_AFTER_LIMIT = 100
# JSON schema types a key field may have: values that name a key the same way every time.
_KEY_TYPES = frozenset({"string", "integer", "boolean"})


@dataclass(frozen=True)
class Rate:
    """At most `limit` starts in any `per` seconds."""

    limit: int
    per: int

    @property
    def text(self) -> str:
        return f"{self.limit}/{_UNIT_NAMES[self.per]}"


def parse_rate(text: str) -> Rate:
    """`"100/minute"` as a Rate; ValueError naming the accepted forms otherwise."""
    match = RATE_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match[1]) < 1:
        raise ValueError(
            f"rate_limit={text!r} is not a rate: write N/second, N/minute or N/hour with N at least 1 "
            "(e.g. '100/minute')"
        )
    return Rate(limit=int(match[1]), per=_UNITS[match[2]])


@dataclass(frozen=True)
class FlowControl:
    """A job's declared limits, checked against its input model."""

    rate: Rate | None = None
    rate_key: str | None = None  # a parameter of the job's input: one window per value
    concurrency: int | None = None
    concurrency_key: str | None = None  # a parameter: at most `concurrency` running per value

    def describe_rate(self) -> str:
        assert self.rate is not None
        return self.rate.text + (f" per {self.rate_key}" if self.rate_key else "")

    def describe_concurrency(self) -> str:
        per = f" per {self.concurrency_key}" if self.concurrency_key else ""
        return f"{self.concurrency} at once{per}"


def flow_control(
    name: str,
    model: type[BaseModel],
    rate_limit: str | None,
    rate_key: str | None,
    concurrency: int | None,
    concurrency_key: str | None,
) -> FlowControl | None:
    """The job's limits, or None without any; ValueError for a bad declaration, naming the job."""
    try:
        rate = parse_rate(rate_limit) if rate_limit is not None else None
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency= is a whole number, at least 1; got {concurrency!r}")
        if rate_key is not None and rate is None:
            raise ValueError("rate_key= needs rate_limit=")
        if concurrency_key is not None and concurrency is None:
            raise ValueError("concurrency_key= needs concurrency=")
        for option, field in (("rate_key", rate_key), ("concurrency_key", concurrency_key)):
            if field is not None:
                _check_key_field(model, option, field)
    except ValueError as exc:
        raise ValueError(f"job {name!r}: {exc}") from None
    if rate is None and concurrency is None:
        return None
    return FlowControl(rate, rate_key, concurrency, concurrency_key)


def _check_key_field(model: type[BaseModel], option: str, field: str) -> None:
    """A key must be a parameter of the input whose values are strings, integers or booleans."""
    if field not in model.model_fields:
        known = ", ".join(model.model_fields) or "none"
        raise ValueError(f"{option}={field!r} is not a parameter of the job (its parameters: {known})")
    schema = model.model_json_schema()["properties"][field]
    kinds = [schema, *schema.get("anyOf", ())]
    if not any(kind.get("type") in _KEY_TYPES or "enum" in kind or "const" in kind for kind in kinds):
        raise ValueError(f"{option}={field!r}: a key parameter holds a string, an integer or a boolean")


def key_value(kwargs: dict[str, Any], field: str) -> str:
    """The canonical text of one input's key value (as JSON; a string as itself), hashed if long."""
    value = kwargs.get(field)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) > KEY_VALUE_MAX:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


class RetryAfter(BaseException):
    """Raised by `retry_after`: the worker runs the job again later, without spending a retry.

    A BaseException, as RQ's ShutDownImminentException is: a job's own `except Exception` around the
    call that got throttled must not swallow it.
    """

    def __init__(self, seconds: int, reason: str) -> None:
        super().__init__(f"retry after {seconds} s" + (f": {reason}" if reason else ""))
        self.seconds = seconds
        self.reason = reason


def retry_after(seconds: float, reason: str = "") -> NoReturn:
    """Stop this run and have the job run again in `seconds` (an upstream's 429), retries unspent."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86_400:
        raise ValueError(f"retry_after takes 0 to 86400 seconds; got {seconds!r}")
    raise RetryAfter(math.ceil(seconds), reason[:200])
