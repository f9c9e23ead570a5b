"""The one writer of new jobs: a Lua script that writes a whole request, and the template it fills.

RQ builds a job's hash once per (job, options), as a template; a request fills in what differs
from one job to the next (id, input, timestamps), and one EVALSHA writes everything RQ's
`Queue.enqueue_call` / `enqueue_at` would, plus offload's listing index, counters and wake list,
atomically. The script also reads what decides the write: the idempotency record (a replay
writes nothing) and the dependencies' statuses (unmet: the jobs are deferred, as RQ's
`setup_dependencies` does), so no WATCH, no retry and no second writer are needed.
tests/unit/test_enqueue.py compares the Redis state it leaves with RQ's own.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import itertools
import json
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Callback, Queue, Retry
from rq.job import Dependency, Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import get_call_string, now, utcformat

from service.connection import Packed
from service.store.layout import (
    CALLBACK_HOOKS,
    COUNTERS_KEY,
    INDEX_RETENTION_SECONDS,
    deferred_key,
    dependencies_key,
    dependents_key,
    index_key,
    job_key,
    queue_key,
    queues_set_key,
    scheduled_key,
    wake_key,
)
from service.store.options import EnqueueOptions, Idempotency, retry_intervals
from service.store.wake import MAX_TOKENS

if TYPE_CHECKING:
    from service.catalog import RegisteredJob

# KEYS: 1 rq:queues, 2 the queue, 3 where the jobs go (the queue, or its scheduled registry),
# 4-6 the listing indexes, 7 the counters, 8 the queue's wake list (service/store/wake.py),
# 9 the idempotency record, 10 the deferred registry; then per dependency its hash, then per
# dependency its dependents set; then per job its hash and its dependencies set.
# ARGV: 1 how the jobs go (RPUSH, LPUSH or ZADD), 2 the listing's trim score, 3 the counter field,
# 4 the number of hash fields and values per job, 5 the number of dependencies, 6 '1' if a failed
# dependency counts as met, 7 the idempotency record ('' for none), 8 its TTL, 9 now (Unix seconds,
# the deferred registry's score); then per job: its id, its score in the scheduled registry ('' if
# none), its listing score, its hash's fields and values.
# Returns {'written', n, 'deferred' or 'as asked'}, {'replay', the stored record} or
# {'missing', the unknown dependencies' places in the list...}.
WRITE_SCRIPT = """
local how, trim, counter, width = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local deps, allow_failure, record = tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7]
if record ~= '' then
  local stored = redis.call('GET', KEYS[9])
  if stored then return {'replay', stored} end
end
local deferred, missing = false, {}
for d = 1, deps do
  local status = redis.call('HGET', KEYS[10 + d], 'status')
  if not status then
    missing[#missing + 1] = d
  elseif status ~= 'finished' and not (allow_failure and status == 'failed') then
    deferred = true
  end
end
if #missing > 0 then
  local reply = {'missing'}
  for _, d in ipairs(missing) do reply[#reply + 1] = d end
  return reply
end
local first = 10 + 2 * deps
local count = (#KEYS - first) / 2
local listed = {}
local at = 10
for i = 1, count do
  local id, job = ARGV[at], KEYS[first + 2 * i - 1]
  redis.call('SADD', KEYS[1], KEYS[2])
  redis.call('HSET', job, unpack(ARGV, at + 3, at + 2 + width))
  if deferred then
    -- RQ's setup_dependencies: the job waits in the deferred registry for its dependencies
    redis.call('HSET', job, 'status', 'deferred')
    redis.call('HDEL', job, 'enqueued_at')
    redis.call('ZADD', KEYS[10], ARGV[9], id)
    for d = 1, deps do
      redis.call('SADD', KEYS[10 + deps + d], id)
      redis.call('SADD', KEYS[first + 2 * i], string.sub(KEYS[10 + d], JOB_PREFIX_LENGTH + 1))
    end
  else
    if how == 'ZADD' then
      redis.call('ZADD', KEYS[3], ARGV[at + 1], id)
    else
      redis.call(how, KEYS[3], id)
    end
  end
  listed[#listed + 1] = ARGV[at + 2]
  listed[#listed + 1] = id
  at = at + 3 + width
end
for k = 4, 6 do
  -- in slices: Lua's unpack takes a few thousand values at most
  for slice = 1, #listed, 1000 do
    redis.call('ZADD', KEYS[k], unpack(listed, slice, math.min(slice + 999, #listed)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', trim)
end
redis.call('HINCRBY', KEYS[7], counter, count)
if how ~= 'ZADD' and not deferred then
  for i = 1, math.min(count, MAX_TOKENS) do redis.call('RPUSH', KEYS[8], '1') end
  redis.call('LTRIM', KEYS[8], -MAX_TOKENS, -1)
end
if record ~= '' then redis.call('SET', KEYS[9], record, 'EX', ARGV[8]) end
return {'written', count, deferred and 'deferred' or 'as asked'}
"""
WRITE_SCRIPT = WRITE_SCRIPT.replace("MAX_TOKENS", str(MAX_TOKENS)).replace(
    "JOB_PREFIX_LENGTH", str(len(job_key("")))
)
WRITE_SCRIPT_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis' script id)
_EVALSHA = Packed(["EVALSHA", WRITE_SCRIPT_SHA])
# An arbitrary moment: templates only need to know whether a job is scheduled, not when.
_SOME_TIME = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class NewJob:
    """A job as the enqueue wrote it: what RQ would read back from its hash right away."""

    id: str
    queue: str
    kwargs: dict[str, Any]
    status: str  # queued, scheduled or deferred when written; read back, whatever it is now
    created_at: datetime | None
    enqueued_at: datetime | None
    due: float | None  # a scheduled job's score in the scheduled registry (Unix seconds)
    timeout: int | None
    retries_left: int | None
    meta: dict[str, Any]
    depends_on: list[str]


@dataclass(slots=True)
class Write:
    """One request's EVALSHA, and the jobs it writes unless the script answers otherwise."""

    command: list[Any]  # with `Packed` runs; `unpacked(command)` for a redis-py client
    jobs: list[NewJob]
    fingerprint: str  # of the request, for an idempotency record's replay ('' without a key)


def prepare(
    registered: RegisteredJob[..., Any],
    inputs: list[dict[str, Any]],
    options: EnqueueOptions,
    idempotency: Idempotency | None,
    fingerprint: str,
) -> Write:
    """The script call that writes one job per input, with these options, all or none."""
    template = _template_for(registered, options)
    stamp = now()  # RQ stamps creation and enqueueing apart; one instant does for both here
    formatted = utcformat(stamp)
    due = calendar.timegm(options.at.utctimetuple()) if options.at is not None else None
    first = int(stamp.timestamp() * 1_000_000)
    ids = [str(uuid.uuid4()) for _ in inputs]
    record = json.dumps({"fingerprint": fingerprint, "job_ids": ids}) if idempotency is not None else ""
    deps = options.depends_on
    keys: list[Any] = [template.keys, idempotency.redis_key if idempotency is not None else ""]
    keys += [template.deferred, *map(job_key, deps), *map(dependents_key, deps)]
    args: list[Any] = [
        template.how,
        first - INDEX_RETENTION_SECONDS * 1_000_000,
        template.counter,
        template.width,
        len(deps),
        "1" if options.allow_failure else "",
        record,
        idempotency.ttl if idempotency is not None else 0,
        int(stamp.timestamp()),  # RQ's current_timestamp(), the deferred registry's score
    ]
    jobs = []
    runs = template.runs
    for n, (job_id, kwargs) in enumerate(zip(ids, inputs, strict=True)):
        data = zlib.compress(JSONSerializer.dumps((template.func_name, None, (), kwargs)))
        description = get_call_string(template.func_name, (), kwargs, max_length=75)
        own = {template.created_at: formatted, template.data: data, template.description: description}
        if template.enqueued_at is not None:
            own[template.enqueued_at] = formatted
        keys += (job_key(job_id), dependencies_key(job_id))
        args += (job_id, "" if due is None else due, first + n, runs[0])
        for slot, run in zip(template.slots, runs[1:], strict=True):
            args += (own[slot], run)
        jobs.append(
            NewJob(
                id=job_id,
                queue=template.queue,
                kwargs=kwargs,
                status=template.status,
                created_at=stamp,
                enqueued_at=None if template.scheduled else stamp,
                due=due,
                timeout=template.timeout,
                retries_left=template.retries_left,
                meta=dict(template.meta),
                depends_on=list(deps),
            )
        )
    key_count = len(keys) - 1 + len(template.keys.args)  # the template's keys are one run
    command = [_EVALSHA, key_count, *keys, *args]
    return Write(command=command, jobs=jobs, fingerprint=fingerprint)


def deferred(jobs: list[NewJob]) -> list[NewJob]:
    """The jobs as the script wrote them when a dependency was unmet (RQ's deferred state)."""
    return [replace(job, status=JobStatus.DEFERRED.value, enqueued_at=None) for job in jobs]


class _Template:
    """RQ's hash of a job, as its enqueue saves it, less what differs from one job to the next."""

    def __init__(self, registered: RegisteredJob[..., Any], options: EnqueueOptions) -> None:
        # RQ's objects want a client; building them sends nothing.
        queue = Queue(
            options.queue or registered.defaults.queue, connection=Redis(), serializer=JSONSerializer
        )
        job = _create(queue, registered, options, "template", {})
        status = job.get_status(refresh=False)
        assert status is not None
        assert job.func_name is not None
        assert job.ttl is None  # RQ's cleanup(ttl=None) adds no EXPIRE; neither does the script
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
            self.how, target = "ZADD", scheduled_key(queue.name)
        else:
            self.how, target = ("LPUSH" if options.at_front else "RPUSH"), queue_key(queue.name)
        indexes = [index_key(), index_key(name=registered.name), index_key(queue=queue.name)]
        self.keys = Packed(
            [queues_set_key(), queue.key, target, *indexes, COUNTERS_KEY, wake_key(queue.name)]
        )
        self.deferred = deferred_key(queue.name)
        # Each job's own values go in these slots; what lies between them is sent as packed.
        self.width = len(self.fields)
        own = (self.created_at, self.data, self.description, self.enqueued_at)
        self.slots = sorted(slot for slot in own if slot is not None)
        bounds = [-1, *self.slots, self.width]
        self.runs = [Packed(self.fields[start + 1 : end]) for start, end in itertools.pairwise(bounds)]
        self.counter = f"{registered.name}:enqueued"
        self.queue = queue.name
        self.status = status.value
        self.timeout = int(job.timeout) if job.timeout is not None else None
        self.retries_left = job.retries_left
        self.meta = job.meta


def as_rq_job(
    connection: Redis, registered: RegisteredJob[..., Any], options: EnqueueOptions, new: NewJob
) -> Job:
    """RQ's `Job` of a job just written, for in-process producers, without reading it back."""
    queue = Queue(new.queue, connection=connection, serializer=JSONSerializer)
    job = _create(queue, registered, options, new.id, new.kwargs, JobStatus(new.status))
    job.created_at = new.created_at or job.created_at
    job.enqueued_at = new.enqueued_at
    return job


def _create(
    queue: Queue,
    registered: RegisteredJob[..., Any],
    options: EnqueueOptions,
    job_id: str,
    kwargs: dict[str, Any],
    status: JobStatus | None = None,
) -> Job:
    """RQ's own job for these options: the template's source, or a written job's object."""
    defaults = registered.defaults
    retries = defaults.retries if options.retries is None else options.retries
    depends_on = (
        Dependency(
            jobs=list(options.depends_on),
            allow_failure=options.allow_failure,
            enqueue_at_front=options.at_front,  # where the job goes once its dependencies end
        )
        if options.depends_on
        else None
    )
    # The function object, never a name from a request: RQ stores its dotted path, which
    # workers resolve only through the registry (service/worker/job.py).
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
        status=status or (JobStatus.SCHEDULED if options.at is not None else JobStatus.QUEUED),
        **_callbacks(options.callback_url),
    )
    return job


def _callbacks(url: str | None) -> dict[str, Any]:
    if url is None:
        return {}
    hooks: dict[str, Any] = {option: Callback(path) for option, path in CALLBACK_HOOKS.items()}
    return hooks | {"meta": {"callback": {"url": url, "status": "pending", "attempts": 0}}}


def _template_for(registered: RegisteredJob[..., Any], options: EnqueueOptions) -> _Template:
    # A template depends on whether a job is scheduled, not on when.
    shape = options if options.at is None else replace(options, at=_SOME_TIME)
    if options.depends_on:  # ids differ from request to request: not worth a cache entry
        return _Template(registered, shape)
    return _cached_template(registered, shape)


@functools.lru_cache(maxsize=512)
def _cached_template(registered: RegisteredJob[..., Any], options: EnqueueOptions) -> _Template:
    return _Template(registered, options)
