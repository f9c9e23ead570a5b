"""Counting jobs per status per queue from RQ's registries: what `GET /queues` and `/metrics` show.

The cost is a fixed number of commands per queue (LLEN, ZCARD, ZCOUNT, and LINDEX for the head's
id), the paused set and the held counts, sent in one round trip: it does not grow with the number of
jobs, however many Redis holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.utils import as_text

from service.schemas import QueueView
from service.store.layout import (
    HELD_COUNTS_KEY,
    PAUSED_KEY,
    RL_KEYS_KEY,
    WORKER_QUEUES,
    concurrency_keys,
    queue_key,
)

# Registries scored by expiry time: entries past it are gone but not yet cleaned by a worker.
EXPIRING = {"started": StartedJobRegistry, "finished": FinishedJobRegistry, "failed": FailedJobRegistry}
# Registries whose entries stay until the job moves on (scored by due or creation time).
LASTING = {
    "scheduled": ScheduledJobRegistry,
    "deferred": DeferredJobRegistry,
    "canceled": CanceledJobRegistry,
}
# The statuses counted, in the order `GET /queues` shows them. `held`: queued jobs set aside by
# their rate limit until a slot of its window frees (service/store/rates.py), not in `queued`.
COUNTED = ("queued", "held", *LASTING, *EXPIRING)


@dataclass(frozen=True, slots=True)
class Overview:
    """Every queue's counts, which queues are paused, and the job at the head of each."""

    counts: dict[str, dict[str, int]]  # queue -> status -> jobs, queues in priority order
    paused: frozenset[str]
    # queue -> the id of the job a worker takes next (RQ pops the list's left end); the oldest
    # queued job, unless one enqueued `at_front` jumped the line. Empty queues are left out.
    heads: dict[str, str]


def queue_counts(connection: Redis) -> dict[str, dict[str, int]]:
    """Jobs per status in each queue (in priority order), from the registries' sizes."""
    return queue_overview(connection).counts


def queue_overview(connection: Redis) -> Overview:
    """`queue_counts`, the paused queues and each queue's head, in one round trip."""
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for name in WORKER_QUEUES:
            pipe.llen(queue_key(name))
            for lasting in LASTING.values():
                pipe.zcard(lasting(name, connection=connection).key)
            for expiring in EXPIRING.values():
                pipe.zcount(expiring(name, connection=connection).key, now, "+inf")
            pipe.lindex(queue_key(name), 0)
        pipe.smembers(PAUSED_KEY)
        pipe.hgetall(HELD_COUNTS_KEY)
        *replies, paused, held = pipe.execute()
    replies_of = iter(replies)
    counts: dict[str, dict[str, int]] = {}
    heads: dict[str, str] = {}
    held_in = {as_text(queue): max(int(count), 0) for queue, count in held.items()}
    for name in WORKER_QUEUES:
        counts[name] = {"queued": int(next(replies_of)), "held": held_in.get(name, 0)}
        counts[name].update({status: int(next(replies_of)) for status in COUNTED[2:]})
        head = next(replies_of)
        if head is not None:
            heads[name] = as_text(head)
    return Overview(counts, frozenset(as_text(name) for name in paused), heads)


def waiting_for_slots(connection: Redis) -> dict[str, int]:
    """Jobs `rate_limited` (waiting for a slot of their concurrency cap) per job name.

    RQ keeps them per RateLimit key, not per queue: one ZCARD per key that has jobs (RQ's maintenance
    drops empty keys), so with a cap per key value this grows with the number of values in use.
    """
    keys = [as_text(key) for key in connection.smembers(RL_KEYS_KEY)]
    if not keys:
        return {}
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(concurrency_keys(key)[2])
        sizes = pipe.execute()
    waiting: dict[str, int] = {}
    for key, size in zip(keys, sizes, strict=True):
        name = key.split(":", 1)[0]  # the job's name, then its key value
        waiting[name] = waiting.get(name, 0) + int(size)
    return waiting


def queue_views(connection: Redis) -> list[QueueView]:
    """What `GET /queues` shows: each queue's counts and whether it is paused (one round trip)."""
    overview = queue_overview(connection)
    return [
        QueueView(name=name, counts=of, paused=name in overview.paused)
        for name, of in overview.counts.items()
    ]
