"""Redis as a test compares it: every key's type, value and expiry, less what the moment decides.

Two runs of the same jobs (the same ids, a worker of the same name) in two empty servers, one by
offload's scripts and one by RQ's own calls, must leave equal snapshots: tests/unit/test_finish.py
(a run's end) and tests/unit/test_claim.py (its claim).
"""

from __future__ import annotations

import re
from typing import Any

from redis import Redis

from service.store.layout import APPLIED_PREFIX

# What a moment decides: ISO timestamps, Unix times, RQ's random run ids, a run's duration.
MOMENTS = [
    (re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?"), b"<time>"),
    (re.compile(rb"\b1\d{9}(\.\d+)?\b"), b"<unix>"),
    (re.compile(rb"\b[0-9a-f]{32}\b"), b"<run>"),
]
WORKER_FIELDS = (b"successful_job_count", b"state")  # the rest are the process's own: birth, pid, time
SECONDS = 3  # scores and expiries counted from now may differ this much between the two runs


def _normal(raw: Any) -> bytes:
    value = raw if isinstance(raw, bytes) else str(raw).encode()
    for pattern, placeholder in MOMENTS:
        value = pattern.sub(placeholder, value)
    return value


def snapshot(redis: Redis) -> dict[bytes, Any]:
    """Every key: its type, its value with the moments taken out, and its expiry in seconds."""
    connection: Any = redis  # redis-py's replies are typed for either decoding; these are bytes
    found: dict[bytes, Any] = {}
    for key in sorted(connection.keys("*")):
        if key.startswith(APPLIED_PREFIX.encode()):  # offload's own marks, checked on their own
            continue
        kind = connection.type(key)
        value: Any
        if kind == b"hash":
            fields = connection.hgetall(key)
            if key.startswith(b"rq:worker:"):  # its birth, pid, working time: the process's own
                fields = {name: fields[name] for name in WORKER_FIELDS if name in fields}
            value = {name: _normal(raw) for name, raw in fields.items()}
        elif kind == b"zset":
            members = connection.zrange(key, 0, -1, withscores=True)
            value = {_normal(member): score for member, score in members}
        elif kind == b"set":
            value = sorted(_normal(member) for member in connection.smembers(key))
        elif kind == b"list":
            value = [_normal(item) for item in connection.lrange(key, 0, -1)]
        elif kind == b"stream":
            value = [
                {name: _normal(raw) for name, raw in fields.items()} for _id, fields in connection.xrange(key)
            ]
        else:
            value = _normal(connection.get(key) or b"")
        found[_normal(key)] = (kind, value, connection.ttl(key))
    return found


def assert_same(fast: dict[bytes, Any], rq: dict[bytes, Any]) -> None:
    assert fast.keys() == rq.keys()
    for key, (kind, value, ttl) in fast.items():
        rq_kind, rq_value, rq_ttl = rq[key]
        assert kind == rq_kind, key
        assert (ttl < 0) == (rq_ttl < 0), (key, ttl, rq_ttl)
        assert abs(ttl - rq_ttl) <= SECONDS, (key, ttl, rq_ttl)
        if kind == b"zset":
            assert value.keys() == rq_value.keys(), key
            for member, score in value.items():
                assert score == rq_value[member] or abs(score - rq_value[member]) <= SECONDS, (key, member)
        else:
            assert value == rq_value, key
