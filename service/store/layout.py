"""Offload's Redis layout, named once: every key, channel and name the processes share through Redis.

RQ's own keys (`rq:job:<id>`, `rq:queue:<name>`, its registries) are RQ's to name: they are derived
here from RQ's own functions, never spelled out, so an RQ upgrade that moves them moves them here
too. Offload's keys all start with `offload:`. The Lua scripts that touch them, the enqueue's
(`service/store/write.py`), the take's (`service/store/queues.py`, `service/store/rates.py`), the
resume's (`service/store/pause.py`) and the expiry's (`service/store/expiry.py`), are given these
names as keys, or build them from the prefixes named here.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal, get_args

from rq import Queue
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.rate_limit import RateLimitRegistry
from rq.registry import DeferredJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import BaseWorker

# --- queues --------------------------------------------------------------------------------------

# The queues a request may name, in priority order: a worker takes from the first with work.
QueueName = Literal["high", "default", "low"]
QUEUES: tuple[str, ...] = get_args(QueueName)
# Webhook deliveries have a queue of their own, right after `high`: they are short (a POST with a
# timeout) and late ones are worth little, so they must not wait behind long jobs.
WEBHOOK_QUEUE = "webhooks"
WORKER_QUEUES: tuple[str, ...] = ("high", WEBHOOK_QUEUE, "default", "low")

# --- statuses (RQ's, as the API spells them) -----------------------------------------------------

StatusName = Literal[
    "queued",
    "scheduled",
    "deferred",
    "rate_limited",
    "started",
    "finished",
    "failed",
    "stopped",
    "canceled",
]
STATUSES: tuple[str, ...] = get_args(StatusName)
TERMINAL = frozenset({"finished", "failed", "stopped", "canceled"})
# rate_limited: RQ's status of a job that waits for a free slot of its concurrency cap.
NOT_YET_RUN = frozenset({"queued", "scheduled", "deferred", "rate_limited"})
# A job that is running or ran: it has started at least once.
RAN = frozenset({"started", "finished", "failed", "stopped"})

# --- job ids -------------------------------------------------------------------------------------

# What a job id may be: offload makes UUIDs; RQ allows more, and jobs made elsewhere stay readable.
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JOB_ID_MAX_LENGTH = 128


def is_job_id(text: str) -> bool:
    """Whether `text` matches JOB_ID_PATTERN (without a regex: this runs per `depends_on` value)."""
    return 0 < len(text) <= JOB_ID_MAX_LENGTH and all(
        c.isascii() and (c.isalnum() or c in "_-") for c in text
    )


# --- RQ's keys, from RQ ----------------------------------------------------------------------------


def job_key(job_id: str) -> str:
    """The job's hash (RQ's)."""
    return Job.key_for(job_id)


def queue_key(queue: str) -> str:
    """The queue's list of job ids (RQ's)."""
    return Queue.redis_queue_namespace_prefix + queue


def intermediate_key(queue: str) -> str:
    """Where a worker moves a job id it takes, until it claims the job (RQ's)."""
    return IntermediateQueue.get_intermediate_queue_key(queue_key(queue))


def queues_set_key() -> str:
    """The set of every queue's key that ever held a job (RQ's `Queue.all` reads it)."""
    return Queue.redis_queues_keys


def scheduled_key(queue: str) -> str:
    """The queue's jobs that wait for a time, scored by it (RQ's scheduled registry)."""
    return ScheduledJobRegistry.key_template.format(queue)


def due_score(at: datetime) -> int:
    """A scheduled job's score: its time in whole UTC seconds, rounded up. RQ's registry rounds
    down, and its scheduler moves a job once the current second reaches the score, so a job due
    at 12:00:00.9 would run as soon as 12:00:00.0; rounded up, no job runs before it is due."""
    return math.ceil(at.timestamp())


def started_key(queue: str) -> str:
    """The queue's runs in progress, `job id:run id` scored by when each lapses (RQ's started registry)."""
    return StartedJobRegistry.key_template.format(queue)


def finished_key(queue: str) -> str:
    """The queue's finished jobs, scored by when each one's result lapses (RQ's finished registry)."""
    return FinishedJobRegistry.key_template.format(queue)


def registry_score(ttl: int, now: int) -> int | str:
    """A member's score in RQ's registries (`BaseRegistry.add`, `add_execution`): when it lapses, `now`
    plus `ttl`; -1, kept forever, is +inf."""
    if ttl == -1:
        return "+inf"
    return ttl if ttl < 0 else now + ttl


def worker_key(name: str) -> str:
    """A worker's hash, kept alive by its heartbeat (RQ's)."""
    return BaseWorker.redis_worker_namespace_prefix + name


def worker_runs_key(name: str) -> str:
    """The `job id:run id` entries of a worker's runs in progress (RQ's execution index)."""
    return WORKER_EXECUTIONS_KEY_TEMPLATE.format(name)


def deferred_key(queue: str) -> str:
    """The queue's jobs that wait for other jobs (RQ's deferred registry)."""
    return DeferredJobRegistry.key_template.format(queue)


def dependents_key(job_id: str) -> str:
    """The jobs that wait for this one (RQ's)."""
    return Job.dependents_key_for(job_id)


def dependencies_key(job_id: str) -> str:
    """The jobs this one waits for: RQ's `Job.dependencies_key`, with its double colon."""
    return f"{Job.redis_job_namespace_prefix}:{job_id}:dependencies"


# Prefix of a job's hash: the take script builds it from an id (not for Redis Cluster, which RQ does
# not support either).
JOB_KEY_PREFIX = job_key("")

# --- offload's keys ------------------------------------------------------------------------------

# Every job offload enqueued, scored by enqueue time (integer µs), and one such index per job name
# and per queue: `GET /jobs` pages through them.
INDEX_KEY = "offload:index"
# Listing entries outlive most job records; readers skip and drop the ones that expired.
INDEX_RETENTION_SECONDS = 90 * 24 * 3600
# Cluster-wide job counts for /metrics, one hash field per job name and event ("word_count:enqueued",
# "word_count:finished", ...): every process adds to the same fields.
COUNTERS_KEY = "offload:counters"
IDEMPOTENCY_PREFIX = "offload:idempotency:"
# A unique job's lock (service/store/unique.py): the id of the job that holds its key input.
UNIQUE_PREFIX = "offload:unique:"
# How long a lock outlives its enqueue (plus any delay and `finished_for`): a bound on its memory
# for owners that ended long ago, generous enough that no live owner should outlast it.
UNIQUE_LOCK_SECONDS = 7 * 24 * 3600
WAKE_PREFIX = "offload:wake:"
EVENTS_PREFIX = "offload:events:"
LEASE_KEY = "offload:clock:lease"
# When the clock holding the lease last renewed it (Unix seconds, as text), written by the renewal
# itself once a round: `/metrics` shows it, so an alert can tell a clock that stopped ticking.
CLOCK_TICK_KEY = "offload:clock:tick"
# The names of the queues an admin paused (service/store/pause.py): the take script skips them,
# enqueues still land in them.
PAUSED_KEY = "offload:paused"

# --- flow control ----------------------------------------------------------------------------------

# A concurrency cap is RQ's own RateLimit (rq/rate_limit.py): its keys are RQ's, derived below.
RL_KEYS_KEY = RateLimitRegistry.rl_keys_key
# A rate-limited job's hash carries its limit in an offload-owned field, written by the enqueue (RQ
# keeps fields it does not know), so the take script needs no catalogue: "<limit> <window ms>
# <bucket>", the bucket being the job's name, or its name and key value (`rate_bucket`).
RATE_FIELD = "offload_rate"
# Set while the job is held back by its rate limit: "held <estimated eligible time, ms>"; then
# "released" from when it is put back on its queue until a worker takes it.
HOLD_FIELD = "offload_hold"
# Per bucket: the start times of its jobs in the last window (a sorted set, a sliding-window log,
# scored in ms), and the ids of its held jobs, oldest first (a list).
RATE_LOG_PREFIX = "offload:rate:"
HELD_PREFIX = "offload:held:"
# The buckets with held jobs, scored by when the first of them may start (ms): takes release them.
HELD_DUE_KEY = "offload:held-due"
# Jobs held per queue (a hash, queue -> count), for GET /queues and /metrics.
HELD_COUNTS_KEY = "offload:held-counts"


def rate_bucket(name: str, value: str | None) -> str:
    """The bucket a rate limit counts a job in: per job name, or per name and key value."""
    return name if value is None else f"{name}:{value}"


def rate_log_key(bucket: str) -> str:
    """A bucket's sliding-window log: its jobs' start times (ms) in the last window."""
    return RATE_LOG_PREFIX + bucket


def held_key(bucket: str) -> str:
    """A bucket's held jobs, oldest first."""
    return HELD_PREFIX + bucket


def concurrency_key(name: str, value: str | None) -> str:
    """RQ's RateLimit key of a capped job: per job name, or per name and key value."""
    return name if value is None else f"{name}:{value}"


def concurrency_keys(key: str) -> tuple[str, str, str]:
    """RQ's keys of a RateLimit key: its config hash, its allowed set, its rate_limited set."""
    registry: Any = SimpleNamespace(key=key)  # RQ's properties read only the key
    return (
        RateLimitRegistry.config_key.fget(registry),  # type: ignore[attr-defined]
        RateLimitRegistry.allowed_key.fget(registry),  # type: ignore[attr-defined]
        RateLimitRegistry.rate_limited_key.fget(registry),  # type: ignore[attr-defined]
    )


def index_key(name: str | None = None, queue: str | None = None) -> str:
    """The listing index of the jobs with this name, else this queue, else of every job."""
    if name is not None:
        return f"{INDEX_KEY}:name:{name}"
    if queue is not None:
        return f"{INDEX_KEY}:queue:{queue}"
    return INDEX_KEY


def counter_field(name: str, event: str) -> str:
    """The COUNTERS_KEY field that counts `event` (enqueued, finished, ...) for jobs named `name`."""
    return f"{name}:{event}"


def idempotency_key(client_key: str) -> str:
    """Where a client's Idempotency-Key is remembered: hashed, since the client's key can be any text."""
    return IDEMPOTENCY_PREFIX + hashlib.sha256(client_key.encode()).hexdigest()


def unique_key(name: str, canonical: str) -> str:
    """The lock of a unique job's key input (`canonical`, its JSON): hashed, since inputs can be long."""
    return f"{UNIQUE_PREFIX}{name}:{hashlib.sha256(canonical.encode()).hexdigest()}"


# A run's claim or end (service/store/claim.py, end.py) marks itself applied here, for a minute: a
# script call redis-py sends again (the reply lost as Redis restarted) then reports it applied
# instead of running it twice or calling it lost.
APPLIED_PREFIX = "offload:applied:"
APPLIED_SECONDS = 60


def applied_key(what: str, run_id: str) -> str:
    """Where a run's claim (`claim`) or end (`end`) marks itself applied."""
    return f"{APPLIED_PREFIX}{what}:{run_id}"


def wake_key(queue: str) -> str:
    """The list idle workers of `queue` block on; every push of a job adds a token."""
    return WAKE_PREFIX + queue


def events_channel(job_id: str) -> str:
    """The pub/sub channel that announces a job's changes to its `GET /jobs/{id}/events` streams."""
    return EVENTS_PREFIX + job_id


# --- callbacks -------------------------------------------------------------------------------------

# RQ stores a job's callbacks by dotted path and imports them in the worker when the job ends. The
# store writes these for a job with a `callback_url`; the worker refuses any other path
# (service/worker/job.py), and tests/unit/test_store_layout.py checks that each names the worker's
# function, since no import between the two shows it.
CALLBACK_HOOKS = {
    "on_success": "service.worker.webhooks.on_success",
    "on_failure": "service.worker.webhooks.on_failure",
    "on_stopped": "service.worker.webhooks.on_stopped",
}
