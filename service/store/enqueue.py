"""The one enqueue path: the API and in-process producers both write jobs through `enqueue`.

One Redis transaction writes a whole request: every job of a batch, its scheduling or
dependencies, the listing index and the idempotency record. A request is either all in Redis
or not at all.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from redis import Redis, WatchError
from redis.exceptions import NoScriptError
from rq import Callback, Queue, Retry
from rq.job import Dependency, Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import as_text, get_call_string, now, utcformat

from service.store.layout import (
    CALLBACK_HOOKS,
    COUNTERS_KEY,
    INDEX_RETENTION_SECONDS,
    QUEUES,
    counter_field,
    idempotency_key,
    index_key,
    wake_key,
)
from service.store.wake import MAX_TOKENS, wake

if TYPE_CHECKING:
    from redis.client import Pipeline

    from service.catalog import RegisteredJob

# Concurrent writers touching the same idempotency key or dependency: retry the transaction.
TRANSACTION_ATTEMPTS = 20


class EnqueueError(Exception):
    """A request that cannot be enqueued as asked; nothing was written."""


class UnknownDependencyError(EnqueueError):
    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"depends_on names jobs that do not exist: {', '.join(missing)}")
        self.missing = list(missing)


class IdempotencyConflictError(EnqueueError):
    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request (job, input or options); "
            "use a new key for a new request"
        )


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-enqueue overrides of a job's defaults; None keeps the default."""

    queue: str | None = None
    timeout: int | None = None
    retries: int | None = None
    result_ttl: int | None = None
    at: datetime | None = None  # run no earlier than this (timezone-aware); None: now
    depends_on: tuple[str, ...] = ()
    allow_failure: bool = False  # dependents also run when a dependency failed
    at_front: bool = False
    callback_url: str | None = None  # POSTed the job's final view when it ends

    def __post_init__(self) -> None:
        if self.callback_url is not None and not self.callback_url.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http:// or https:// URL")
        if self.queue is not None and self.queue not in QUEUES:
            raise ValueError(f"unknown queue {self.queue!r}; queues are {', '.join(QUEUES)}")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("`at` needs a timezone")
        if self.at is not None and self.depends_on:
            raise ValueError("a job waits for a time or for other jobs, not both")


@dataclass(frozen=True)
class Idempotency:
    """A client's key for a request: a replay returns the jobs the first one made."""

    key: str
    ttl: int

    @property
    def redis_key(self) -> str:
        return idempotency_key(self.key)


@dataclass
class Enqueued:
    """The jobs an enqueue wrote or, `replayed`, the ones the key's first request wrote."""

    jobs: list[Job]
    replayed: bool = False


def enqueue(
    connection: Redis,
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions | None = None,
    idempotency: Idempotency | None = None,
) -> Enqueued:
    """Enqueue one job per validated input, all or nothing."""
    options = options or EnqueueOptions()
    queue = Queue(
        options.queue or registered.defaults.queue, connection=connection, serializer=JSONSerializer
    )
    fingerprint = _fingerprint(registered, inputs, options)
    with connection.pipeline() as pipe:
        for _ in range(TRANSACTION_ATTEMPTS):
            try:
                return _write(pipe, queue, registered, inputs, options, idempotency, fingerprint)
            except WatchError:
                continue  # someone wrote a watched key meanwhile: look again
            finally:
                pipe.reset()
    raise EnqueueError("too many concurrent writers on the same idempotency key or dependencies")


def _write(
    pipe: Pipeline,
    queue: Queue,
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions,
    idempotency: Idempotency | None,
    fingerprint: str,
) -> Enqueued:
    if idempotency is not None:
        pipe.watch(idempotency.redis_key)
        stored = pipe.get(idempotency.redis_key)
        if stored is not None:
            record = json.loads(stored)
            if record["fingerprint"] != fingerprint:
                raise IdempotencyConflictError
            found = Job.fetch_many(record["job_ids"], connection=queue.connection, serializer=JSONSerializer)
            return Enqueued(jobs=[job for job in found if job is not None], replayed=True)
    unmet = _unmet_dependencies(pipe, options)
    jobs = [
        _create(queue, registered, params.model_dump(mode="json"), options, str(uuid.uuid4()))
        for params in inputs
    ]
    now = time.time()
    pipe.multi()
    for job in jobs:
        if unmet:
            # What RQ's Queue.setup_dependencies does, inside this one transaction.
            job.set_status(JobStatus.DEFERRED, pipeline=pipe)
            job.register_dependency(pipeline=pipe)
            job.save(pipeline=pipe)
            job.cleanup(ttl=job.ttl, pipeline=pipe)
            pipe.sadd(queue.redis_queues_keys, queue.key)
        elif options.at is not None:
            queue.schedule_job(job, options.at, pipeline=pipe)
        else:
            # RQ's enqueue_many does the same: dependencies are settled, the transaction is open.
            pipe.sadd(queue.redis_queues_keys, queue.key)
            queue._enqueue_job(job, pipeline=pipe, at_front=options.at_front)
    _index(pipe, registered.name, queue.name, [job.id for job in jobs], now)
    count_event(pipe, registered.name, "enqueued", len(jobs))  # in the transaction: counted iff written
    if not unmet and options.at is None:
        wake(pipe, queue.name, len(jobs))  # idle workers take them at once (service/store/wake.py)
    if idempotency is not None:
        record = {"fingerprint": fingerprint, "job_ids": [job.id for job in jobs]}
        pipe.set(idempotency.redis_key, json.dumps(record), ex=idempotency.ttl)
    pipe.execute()
    return Enqueued(jobs=jobs)


def _create(
    queue: Queue,
    registered: RegisteredJob[..., Any],
    kwargs: dict[str, Any],
    options: EnqueueOptions,
    job_id: str,
) -> Job:
    defaults = registered.defaults
    retries = defaults.retries if options.retries is None else options.retries
    depends_on = (
        Dependency(jobs=list(options.depends_on), allow_failure=options.allow_failure)
        if options.depends_on
        else None
    )
    # The function object, never a name from a request: RQ stores its dotted path, which
    # workers resolve only through the registry (service/worker/worker.py).
    job = queue.create_job(
        registered.func,
        kwargs=kwargs,
        timeout=defaults.timeout if options.timeout is None else options.timeout,
        result_ttl=defaults.result_ttl if options.result_ttl is None else options.result_ttl,
        failure_ttl=defaults.failure_ttl,
        retry=Retry(max=retries, interval=retry_intervals(defaults.retry_intervals, retries))
        if retries
        else None,
        depends_on=depends_on,
        job_id=job_id,
        status=JobStatus.SCHEDULED if options.at is not None else JobStatus.QUEUED,
        **_callbacks(options.callback_url),
    )
    job.enqueue_at_front = options.at_front
    return job


def _callbacks(url: str | None) -> dict[str, Any]:
    if url is None:
        return {}
    hooks: dict[str, Any] = {option: Callback(path) for option, path in CALLBACK_HOOKS.items()}
    return hooks | {"meta": {"callback": {"url": url, "status": "pending", "attempts": 0}}}


def retry_intervals(intervals: Sequence[int], retries: int) -> list[int]:
    """One interval per retry: the n-th retry waits the n-th interval, the last repeating.

    RQ picks the interval of a list by retries *left*, so a list longer than the retries
    would start at its end (`retries=1` with (10, 60, 300) would wait 300 s).
    """
    intervals = tuple(intervals) or (0,)
    return [intervals[min(n, len(intervals) - 1)] for n in range(retries)]


def _unmet_dependencies(pipe: Pipeline, options: EnqueueOptions) -> bool:
    """Whether the new jobs must wait; the dependencies are WATCHed until the transaction."""
    if not options.depends_on:
        return False
    keys = [Job.key_for(job_id) for job_id in options.depends_on]
    pipe.watch(*keys)
    statuses: list[Any] = [pipe.hget(key, "status") for key in keys]
    missing = [job_id for job_id, status in zip(options.depends_on, statuses, strict=True) if status is None]
    if missing:
        raise UnknownDependencyError(missing)
    met = {JobStatus.FINISHED.value} | ({JobStatus.FAILED.value} if options.allow_failure else set())
    return any(as_text(status) not in met for status in statuses)


def _index(pipe: Pipeline, name: str, queue: str, job_ids: list[str], now: float) -> None:
    """Record the jobs for `GET /jobs`: newest first, by name or queue, at a cost per page."""
    # Integer microseconds, exact in a double, one apart within a batch: pages can resume
    # exactly after the last job they showed.
    first = int(now * 1_000_000)
    scores = {job_id: first + n for n, job_id in enumerate(job_ids)}
    for key in (index_key(), index_key(name=name), index_key(queue=queue)):
        pipe.zadd(key, scores)
        pipe.zremrangebyscore(key, "-inf", first - INDEX_RETENTION_SECONDS * 1_000_000)


def count_event(pipe: Redis | Pipeline, name: str, event: str, amount: int = 1) -> None:
    """Add to the cluster-wide count of `event` for jobs named `name` (read by /metrics)."""
    pipe.hincrby(COUNTERS_KEY, counter_field(name, event), amount)


def _fingerprint(
    registered: RegisteredJob[..., Any], inputs: Sequence[BaseModel], options: EnqueueOptions
) -> str:
    """What makes two requests the same request, whatever the JSON's spacing or key order."""
    request = {
        "job": registered.name,
        "inputs": [params.model_dump(mode="json") for params in inputs],
        "options": {key: str(value) for key, value in sorted(vars(options).items())},
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


# --- The fast path: the same writes as `enqueue`, as one script, for an asyncio client -------------
#
# `enqueue` builds RQ's Job objects and sends a MULTI/EXEC of a dozen commands per job: fine in a
# thread, but slow per request. The common request (no dependencies, no Idempotency-Key) needs no
# WATCH, so its writes can be prepared in advance: RQ builds a template of the job hash once per
# (job, options), a request fills in what differs (id, input, timestamps), and one EVALSHA writes
# everything `_write` would, in its order, atomically. tests/unit/test_enqueue_fast.py compares
# the Redis state both paths leave.

# KEYS: rq:queues, the queue, where the jobs go (the queue, or its scheduled registry), the three
# listing indexes, the counters, the queue's wake list (service/store/wake.py), then each job's hash.
# ARGV: how they go (RPUSH, LPUSH or ZADD),
# the listing's trim score, the counter field, the number of hash fields and values per job, then
# per job: its id, its score in the scheduled registry ('' if none), its listing score, its hash.
WRITE_SCRIPT = """
local how, trim, counter, width = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local count = #KEYS - 8
local listed = {}
local at = 5
for i = 1, count do
  local id = ARGV[at]
  redis.call('SADD', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[8 + i], unpack(ARGV, at + 3, at + 2 + width))
  if how == 'ZADD' then
    redis.call('ZADD', KEYS[3], ARGV[at + 1], id)
  else
    redis.call(how, KEYS[3], id)
  end
  listed[#listed + 1] = ARGV[at + 2]
  listed[#listed + 1] = id
  at = at + 3 + width
end
for k = 4, 6 do
  -- in slices: Lua's unpack takes a few thousand values at most
  for first = 1, #listed, 1000 do
    redis.call('ZADD', KEYS[k], unpack(listed, first, math.min(first + 999, #listed)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', trim)
end
redis.call('HINCRBY', KEYS[7], counter, count)
if how ~= 'ZADD' then
  for i = 1, math.min(count, MAX_TOKENS) do redis.call('RPUSH', KEYS[8], '1') end
  redis.call('LTRIM', KEYS[8], -MAX_TOKENS, -1)
end
return count
"""
WRITE_SCRIPT = WRITE_SCRIPT.replace("MAX_TOKENS", str(MAX_TOKENS))
WRITE_SCRIPT_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis' script id)
# What sends one command and returns its reply (service/connection.py batches them).
Execute = Callable[..., Awaitable[Any]]
# An arbitrary moment: templates only need to know whether a job is scheduled, not when.
_SOME_TIME = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class NewJob:
    """A job as the enqueue wrote it: what RQ would read back from its hash right away."""

    id: str
    queue: str
    kwargs: dict[str, Any]
    status: str  # queued or scheduled when written; read back, whatever it is now
    created_at: datetime | None
    enqueued_at: datetime | None
    due: float | None  # a scheduled job's score in the scheduled registry (Unix seconds)
    timeout: int | None
    retries_left: int | None
    meta: dict[str, Any]


def fast_path_allows(options: EnqueueOptions, idempotency: Idempotency | None) -> bool:
    """Whether `enqueue_fast` can write this request: nothing to WATCH, nothing to read first."""
    return idempotency is None and not options.depends_on


async def enqueue_fast(
    execute: Execute,
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions | None = None,
) -> list[NewJob]:
    """Write what `enqueue` writes for a request `fast_path_allows`, in one atomic round trip."""
    options = options or EnqueueOptions()
    if not fast_path_allows(options, None):
        raise ValueError("requests with dependencies go through enqueue()")
    template = _template(
        registered,
        options.queue,
        options.timeout,
        options.retries,
        options.result_ttl,
        options.at is not None,
        options.at_front,
        options.callback_url,
    )
    jobs, command = template.command([params.model_dump(mode="json") for params in inputs], options.at)
    try:
        await execute(*command)
    except NoScriptError:  # a new or restarted Redis: teach it the script; nothing was written
        await execute("SCRIPT", "LOAD", WRITE_SCRIPT)
        await execute(*command)
    return jobs


class _Template:
    """RQ's hash of a job, as `_write` saves it, less what differs from one job to the next."""

    def __init__(self, registered: RegisteredJob[..., Any], options: EnqueueOptions) -> None:
        # RQ's objects want a client; building them sends nothing.
        queue = Queue(
            options.queue or registered.defaults.queue, connection=Redis(), serializer=JSONSerializer
        )
        job = _create(queue, registered, {}, options, "template")
        status = job.get_status(refresh=False)
        assert status is not None
        assert job.func_name is not None
        assert job.ttl is None  # `_write`'s cleanup(ttl=None) adds no EXPIRE; neither does the script
        if status == JobStatus.QUEUED:
            # What Queue._prepare_for_queue sets, short of asking Redis its version.
            job.origin = queue.name
            job.enqueued_at = now()
        # Field, value, field, value...: status first, as `set_status` then `save` leave the hash.
        self.fields: list[Any] = ["status", status.value]
        for field, value in job.to_dict().items():
            self.fields += [field, value.value if isinstance(value, JobStatus) else value]
        value_at = {field: 2 * n + 1 for n, field in enumerate(self.fields[::2])}
        self.created_at = value_at["created_at"]  # where each job's own values go
        self.data = value_at["data"]
        self.description = value_at["description"]
        self.enqueued_at = value_at.get("enqueued_at")
        self.func_name = job.func_name
        self.scheduled = status == JobStatus.SCHEDULED
        if self.scheduled:
            self.how, target = "ZADD", ScheduledJobRegistry(queue.name, connection=queue.connection).key
        else:
            self.how, target = ("LPUSH" if options.at_front else "RPUSH"), queue.key
        indexes = [index_key(), index_key(name=registered.name), index_key(queue=queue.name)]
        self.keys = [queue.redis_queues_keys, queue.key, target, *indexes, COUNTERS_KEY, wake_key(queue.name)]
        self.counter = f"{registered.name}:enqueued"
        self.queue = queue.name
        self.status = status.value
        self.timeout = int(job.timeout) if job.timeout is not None else None
        self.retries_left = job.retries_left
        self.meta = job.meta

    def command(self, inputs: list[dict[str, Any]], at: datetime | None) -> tuple[list[NewJob], list[Any]]:
        """The new jobs, and the EVALSHA that writes them."""
        stamp = now()  # RQ stamps creation and enqueueing apart; one instant does for both here
        formatted = utcformat(stamp)
        due = calendar.timegm(at.utctimetuple()) if at is not None else None
        first = int(stamp.timestamp() * 1_000_000)
        keys = list(self.keys)
        args: list[Any] = [
            self.how,
            first - INDEX_RETENTION_SECONDS * 1_000_000,
            self.counter,
            len(self.fields),
        ]
        jobs = []
        for n, kwargs in enumerate(inputs):
            job_id = str(uuid.uuid4())
            fields = self.fields.copy()
            fields[self.created_at] = formatted
            fields[self.data] = zlib.compress(JSONSerializer.dumps((self.func_name, None, (), kwargs)))
            fields[self.description] = get_call_string(self.func_name, (), kwargs, max_length=75)
            if self.enqueued_at is not None:
                fields[self.enqueued_at] = formatted
            keys.append(Job.key_for(job_id))
            args += (job_id, "" if due is None else due, first + n)
            args += fields
            jobs.append(
                NewJob(
                    id=job_id,
                    queue=self.queue,
                    kwargs=kwargs,
                    status=self.status,
                    created_at=stamp,
                    enqueued_at=None if self.scheduled else stamp,
                    due=due,
                    timeout=self.timeout,
                    retries_left=self.retries_left,
                    meta=dict(self.meta),
                )
            )
        return jobs, ["EVALSHA", WRITE_SCRIPT_SHA, len(keys), *keys, *args]


@functools.lru_cache(maxsize=512)
def _template(
    registered: RegisteredJob[..., Any],
    queue: str | None,
    timeout: int | None,
    retries: int | None,
    result_ttl: int | None,
    scheduled: bool,
    at_front: bool,
    callback_url: str | None,
) -> _Template:
    """The template for these options, made by RQ itself so the fields are always RQ's own."""
    # The options the template depends on; only whether a job is scheduled, not when.
    options = EnqueueOptions(
        queue=queue,
        timeout=timeout,
        retries=retries,
        result_ttl=result_ttl,
        at=_SOME_TIME if scheduled else None,
        at_front=at_front,
        callback_url=callback_url,
    )
    return _Template(registered, options)
