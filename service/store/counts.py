"""Counting jobs per status per queue from RQ's registries: what `GET /queues` and `/metrics` show.

The cost is a fixed number of commands per queue (LLEN, ZCARD, ZCOUNT), sent in one round trip:
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

from service.store.layout import WORKER_QUEUES, queue_key

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
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for name in WORKER_QUEUES:
            pipe.llen(queue_key(name))
            for lasting in LASTING.values():
                pipe.zcard(lasting(name, connection=connection).key)
            for expiring in EXPIRING.values():
                pipe.zcount(expiring(name, connection=connection).key, now, "+inf")
        counts = iter(pipe.execute())
    return {name: {status: int(next(counts)) for status in COUNTED} for name in WORKER_QUEUES}
