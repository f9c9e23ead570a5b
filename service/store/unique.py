"""Unique jobs: one job per (job name, key input) while it is in the states `unique_while` names.

A job declared `@job(unique_by=("user_id",), unique_while="running")` has a lock per value of its
key fields (`layout.unique_key`) holding the id of the job that owns it. The enqueue's script
(service/store/write.py) reads the lock and its owner's status in the same atomic call: an owner
still in a covered state makes the enqueue a duplicate that returns it and writes nothing; any
other owner (ended, deleted, expired) left a stale lock, which the new job takes over. So no
cleanup has to run when a job ends, and jobs that declare nothing send nothing more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from rq.utils import utcformat

from service.store.layout import UNIQUE_LOCK_SECONDS, unique_key

Mode = Literal["queued", "running", "finished"]
# What each mode covers, for the docs and /catalog; the script (write.py) spells the same out.
# `rate_limited`: a capped job waiting for a slot (service/flow.py) has not started either.
COVERED: dict[Mode, tuple[str, ...]] = {
    "queued": ("queued", "scheduled", "deferred", "rate_limited"),
    "running": ("queued", "scheduled", "deferred", "rate_limited", "started"),
    "finished": ("queued", "scheduled", "deferred", "rate_limited", "started", "finished"),
}
DEFAULT_WHILE = "running"
_FINISHED_FOR = re.compile(r"finished_for=([1-9][0-9]*)")
# The script's uniqueness arguments for a job that declares none: it reads no lock.
NOT_UNIQUE: tuple[str, str, int] = ("", "", 0)


@dataclass(frozen=True)
class Uniqueness:
    """A job's `unique_by` fields and for how long (`mode`, `finished_for`) its jobs exclude others."""

    by: tuple[str, ...]
    mode: Mode
    finished_for: int = 0  # seconds after a `finished` owner ended; 0 unless mode is "finished"

    @property
    def declared(self) -> str:
        """`unique_while` as the job declared it."""
        return f"finished_for={self.finished_for}" if self.mode == "finished" else self.mode

    def lock_key(self, name: str, kwargs: dict[str, Any]) -> str:
        """The lock of this input: canonical JSON of the key fields, so spacing and order never matter."""
        key_input = {field: kwargs[field] for field in self.by}
        return unique_key(name, json.dumps(key_input, sort_keys=True, separators=(",", ":")))

    def script_args(self, stamp: datetime, due: float | None) -> tuple[str, str, int]:
        """The script's mode, the oldest `ended_at` still covered, and the lock's TTL in seconds."""
        # RQ writes ended_at with utcformat's fixed width, so the script compares it as text.
        cutoff = utcformat(stamp - timedelta(seconds=self.finished_for)) if self.mode == "finished" else ""
        delay = max(0, int(due - stamp.timestamp())) if due is not None else 0
        return self.mode, cutoff, UNIQUE_LOCK_SECONDS + delay + self.finished_for


def declare(
    name: str,
    unique_by: Sequence[str] | None,
    unique_while: str | None,
    fields: Collection[str],
    result_ttl: int,
) -> Uniqueness | None:
    """Check a job's uniqueness when it is declared, so a bad one fails at import, not at an enqueue."""
    if unique_by is None:
        if unique_while is not None:
            raise ValueError(f"job {name!r}: unique_while= needs unique_by=, the input fields that key it")
        return None
    if isinstance(unique_by, str) or not all(isinstance(field, str) for field in unique_by):
        raise TypeError(
            f"job {name!r}: unique_by= is a tuple of input field names, e.g. ('user_id',); got {unique_by!r}"
        )
    if not unique_by:
        raise ValueError(f"job {name!r}: unique_by= names at least one input field")
    unknown = [field for field in unique_by if field not in fields]
    if unknown:
        known = ", ".join(fields) or "none"
        raise ValueError(
            f"job {name!r}: unique_by= names {', '.join(map(repr, unknown))}, not a field of its input "
            f"(its fields: {known})"
        )
    declared = DEFAULT_WHILE if unique_while is None else unique_while
    by = tuple(dict.fromkeys(unique_by))
    if declared in ("queued", "running"):
        return Uniqueness(by, "queued" if declared == "queued" else "running")
    matched = _FINISHED_FOR.fullmatch(declared) if isinstance(declared, str) else None
    if matched is None:
        raise ValueError(
            f"job {name!r}: unique_while={unique_while!r} is not one of 'queued', 'running' or "
            "'finished_for=N' (N: whole seconds, at least 1)"
        )
    seconds = int(matched.group(1))
    if seconds > result_ttl:
        # A finished job's record, and with it what the lock checks, is gone after result_ttl.
        raise ValueError(
            f"job {name!r}: unique_while={declared!r} outlasts its result_ttl ({result_ttl} s); "
            "raise result_ttl= or shorten finished_for"
        )
    return Uniqueness(by, "finished", seconds)
