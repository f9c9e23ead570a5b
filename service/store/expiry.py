"""Expiry before start: a job with a `ttl` that no worker started within it is canceled, unrun.

The ttl (seconds) is in the job's meta; it counts from the job's `enqueued_at`, the moment it
was last put on its queue: its enqueue, or for a delayed or dependent job the moment it became
due, or its retry or requeue. Three places cancel a queued job past that deadline, whichever
comes first, each atomically and only while the job is where it looked for it (so two of them
never both cancel it): the worker that takes it (before its claim, service/worker/recovery.py),
the maintenance sweep of the head of each queue (paused ones included: service/store/queues.py),
and any read of the job's view (service/store/views.py). So a job past its ttl never runs, and
never reads `queued` once anyone looks, even on a paused queue or with no worker running.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis import Redis
from rq.job import Job
from rq.rate_limit import RateLimitRegistry
from rq.registry import CanceledJobRegistry
from rq.utils import as_text

from service.connection import script
from service.serializer import JSON
from service.store.layout import COUNTERS_KEY, counter_field, events_channel, queue_key

if TYPE_CHECKING:
    from service.catalog import Registry

EXPIRED = "expired"  # the outcome counted for /metrics (offload_job_runs{outcome="expired"})
UNREGISTERED = "(unregistered)"  # a job the catalogue does not hold, as the worker names it
# Queued ids a maintenance sweep looks at, from the head of each queue (the oldest there).
SWEEP_BATCH = 100

# KEYS: the list the job is in (its queue, or its intermediate list), its hash, the canceled
# registry, the counters. ARGV: the job id, its meta with the error, the registry's score, the
# counter field, the events channel.
# Cancels the job as RQ's `Job.cancel` does, if it is still queued in that list: else someone
# else took it first (a worker, another sweep, a cancel) and nothing is written.
_EXPIRE = """
if redis.call('HGET', KEYS[2], 'status') ~= 'queued' then return 0 end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'status', 'canceled', 'meta', ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[4], 1)
redis.call('PUBLISH', ARGV[5], 'canceled')
return 1
"""


def ttl_of(job: Job) -> int | None:
    """The job's ttl in seconds, if it has one."""
    ttl = job.meta.get("ttl")
    return ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None


def expired(job: Job, at: datetime | None = None) -> bool:
    """Whether the job is queued, unstarted, past its ttl (at `at`, else now)."""
    ttl = ttl_of(job)
    if ttl is None or job.enqueued_at is None or job.get_status(refresh=False) != "queued":
        return False
    enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=UTC)
    return ((at or datetime.now(UTC)) - enqueued).total_seconds() > ttl


def expire(connection: Redis, job: Job, name: str, where: str | None = None) -> bool:
    """Cancel the expired `job` (named `name` in the catalogue) if it is still queued in `where`
    (its queue by default); False if someone else moved it first."""
    meta = dict(job.meta)
    meta["error"] = {"type": "ExpiredError", "message": f"not started within ttl {ttl_of(job)} s"}
    keys = [
        where or queue_key(job.origin),
        job.key,
        CanceledJobRegistry(job.origin, connection=connection).key,
        COUNTERS_KEY,
    ]
    score = int(datetime.now(UTC).timestamp())  # what RQ's CanceledJobRegistry.add scores
    args: list[bytes | str | int] = [
        job.id,
        JSON.dumps(meta),
        score,
        counter_field(name, EXPIRED),
        events_channel(job.id),
    ]
    if not script(connection, _EXPIRE)(keys=keys, args=args, client=connection):
        return False
    job.refresh()
    if job.has_rate_limit:  # a capped job's slot, which a queued job holds: the next of its key's
        RateLimitRegistry.from_job(job).cancel(job.id)
    return True


def sweep(connection: Redis, queue: str, registry: Registry | None) -> int:
    """Cancel the expired jobs among the first SWEEP_BATCH of `queue`; how many it canceled.

    Bounded, so a sweep costs the same whatever the queue's length; the head holds the oldest
    jobs, the first to expire.
    """
    ids = [as_text(raw) for raw in connection.lrange(queue_key(queue), 0, SWEEP_BATCH - 1)]
    jobs = Job.fetch_many(ids, connection=connection, serializer=JSON)
    now = datetime.now(UTC)
    canceled = 0
    for job in jobs:
        if job is not None and expired(job, now):
            canceled += expire(connection, job, catalog_name(registry, job))
    return canceled


def catalog_name(registry: Registry | None, job: Job) -> str:
    """The job's name in the catalogue, as the worker counts its outcomes (service/worker/report.py)."""
    try:
        registered = registry.by_path(job.func_name) if registry is not None else None
    except Exception:  # a job that is not JSON
        registered = None
    return registered.name if registered is not None else UNREGISTERED
