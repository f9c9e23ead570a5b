"""Counting jobs per status per queue from RQ's registries: what `GET /queues` and `/metrics` show.

The cost is a fixed number of commands per queue (LLEN, ZCARD, ZCOUNT, and LINDEX for the head's
id) and the paused set, sent in one round trip: it does not grow with the number of jobs, however
many Redis holds.
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
from service.store.layout import PAUSED_KEY, WORKER_QUEUES, queue_key

# Registries scored by expiry time: entries past it are gone but not yet cleaned by a worker.
EXPIRING = {"started": StartedJobRegistry, "finished": FinishedJobRegistry, "failed": FailedJobRegistry}
# Registries whose entries stay until the job moves on (scored by due or creation time).
LASTING = {
    "scheduled": ScheduledJobRegistry,
    "deferred": DeferredJobRegistry,
    "canceled": CanceledJobRegistry,
}
# The statuses counted, in the order `GET /queues` shows them.
COUNTED = ("queued", *LASTING, *EXPIRING)


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
        *replies, paused = pipe.execute()
    replies_of = iter(replies)
    counts: dict[str, dict[str, int]] = {}
    heads: dict[str, str] = {}
    for name in WORKER_QUEUES:
        counts[name] = {status: int(next(replies_of)) for status in COUNTED}
        head = next(replies_of)
        if head is not None:
            heads[name] = as_text(head)
    return Overview(counts, frozenset(as_text(name) for name in paused), heads)


def queue_views(connection: Redis) -> list[QueueView]:
    """What `GET /queues` shows: each queue's counts and whether it is paused (one round trip)."""
    overview = queue_overview(connection)
    return [
        QueueView(name=name, counts=of, paused=name in overview.paused)
        for name, of in overview.counts.items()
    ]
