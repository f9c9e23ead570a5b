"""Counting jobs per status per queue from RQ's registries: what `GET /queues` and `/metrics` show.

The cost is a fixed number of commands per queue (LLEN, ZCARD, ZCOUNT) and the paused set, sent in
one round trip:
it does not grow with the number of jobs, however many Redis holds.
"""

from __future__ import annotations

import time

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


def queue_counts(connection: Redis) -> dict[str, dict[str, int]]:
    """Jobs per status in each queue (in priority order), from the registries' sizes."""
    return queue_overview(connection)[0]


def queue_overview(connection: Redis) -> tuple[dict[str, dict[str, int]], frozenset[str]]:
    """`queue_counts`, and the names of the paused queues, in the same round trip."""
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for name in WORKER_QUEUES:
            pipe.llen(queue_key(name))
            for lasting in LASTING.values():
                pipe.zcard(lasting(name, connection=connection).key)
            for expiring in EXPIRING.values():
                pipe.zcount(expiring(name, connection=connection).key, now, "+inf")
        pipe.smembers(PAUSED_KEY)
        *sizes, paused = pipe.execute()
    counts = iter(sizes)
    by_queue = {name: {status: int(next(counts)) for status in COUNTED} for name in WORKER_QUEUES}
    return by_queue, frozenset(as_text(name) for name in paused)


def queue_views(connection: Redis) -> list[QueueView]:
    """What `GET /queues` shows: each queue's counts and whether it is paused (one round trip)."""
    counts, paused = queue_overview(connection)
    return [QueueView(name=name, counts=of, paused=name in paused) for name, of in counts.items()]
