"""The one writer of new jobs: a Lua script that writes a whole request, filling RQ's job template.

RQ builds a job's hash once per (job, options), as a template; a request fills in what differs
from one job to the next (id, input, timestamps), and one EVALSHA writes everything RQ's
`Queue.enqueue_call` / `enqueue_at` would, plus offload's listing index, counters and wake list,
atomically. The script also reads what decides the write: the idempotency record (a replay
writes nothing), the dependencies' statuses (unmet: the jobs are deferred, as RQ's
`setup_dependencies` does) and, for a unique job, each input's lock and its owner's status (a
duplicate is not written: service/store/unique.py), so no WATCH, no retry and no second writer
are needed.
tests/unit/test_enqueue.py compares the Redis state it leaves with RQ's own.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rq.job import JobStatus
from rq.utils import get_call_string, now, utcformat

from service.connection import Packed
from service.serializer import JSON
from service.store.layout import (
    INDEX_RETENTION_SECONDS,
    JOB_KEY_PREFIX,
    RL_KEYS_KEY,
    concurrency_keys,
    dependencies_key,
    dependents_key,
    due_score,
    job_key,
    queue_key,
    wake_key,
)
from service.store.options import EnqueueOptions, Idempotency
from service.store.template import cap_key, rate_spec, template_for
from service.store.unique import NOT_UNIQUE
from service.store.wake import MAX_TOKENS

if TYPE_CHECKING:
    from service.catalog import RegisteredJob

# KEYS: 1 rq:queues, 2 the queue, 3 where the jobs go (the queue, or its scheduled registry),
# 4-6 the listing indexes, 7 the counters, 8 the queue's wake list (service/store/wake.py),
# 9 the idempotency record, 10 the deferred registry, 11 RQ's set of RateLimit keys; then per
# dependency its hash, then per dependency its dependents set; then per job its hash, its
# dependencies set, for a unique job its lock and, for a capped job, its RateLimit's config hash,
# allowed and rate_limited sets.
# ARGV: 1 how the jobs go (RPUSH, LPUSH or ZADD), 2 the listing's trim score, 3 the counter field,
# 4 the number of hash fields and values per job, 5 the number of dependencies, 6 '1' if a failed
# dependency counts as met, 7 the idempotency record ('' for none), 8 its TTL, 9 now (Unix seconds,
# the deferred registry's and RQ's rate limit sets' score), 10 the uniqueness mode ('' for none,
# 'queued', 'running', 'finished'), 11 the oldest ended_at a 'finished' mode covers, 12 the locks'
# TTL, 13 the concurrency cap (0: none), 14 now as RQ formats `enqueued_at`; then per job: its id,
# its score in the scheduled registry ('' if none), its listing score, its hash's fields and values.
# Returns {'written', n, 'deferred' or 'as asked', the number of jobs a cap's free slots let
# through, their ids, then per duplicate its place and its owner's id}, {'replay', the stored
# record} or {'missing', the unknown dependencies' places...}.
WRITE_SCRIPT = """
local how, trim, counter, width = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local deps, allow_failure, record = tonumber(ARGV[5]), ARGV[6] == '1', ARGV[7]
local mode, cutoff, cap = ARGV[10], ARGV[11], tonumber(ARGV[13])
if record ~= '' then
  local stored = redis.call('GET', KEYS[9])
  if stored then return {'replay', stored} end
end
-- The job that holds a unique job's lock, if its status is one the mode covers; else the lock
-- is stale (its owner ended, or its record is gone) and free.
local function owner_of(lock)
  local owner = redis.call('GET', lock)
  if not owner then return nil end
  local state = redis.call('HMGET', 'JOB_HASH_PREFIX' .. owner, 'status', 'ended_at')
  local status = state[1]
  if status == 'queued' or status == 'scheduled' or status == 'deferred' or status == 'rate_limited' then
    return owner
  end
  if mode == 'queued' then return nil end
  if status == 'started' then return owner end
  if mode == 'finished' and status == 'finished' and state[2] and state[2] >= cutoff then
    return owner
  end
  return nil
end
local deferred, missing = false, {}
for d = 1, deps do
  local status = redis.call('HGET', KEYS[11 + d], 'status')
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
local first = 11 + 2 * deps
local lock = mode ~= '' and 3 or 0  -- where each job's own keys are, after its hash and dependencies
local limits = cap > 0 and (lock > 0 and 4 or 3) or 0
local stride = 2 + (lock > 0 and 1 or 0) + (cap > 0 and 3 or 0)
local count = (#KEYS - first) / stride
local listed, duplicates, promoted, written = {}, {}, {}, 0
local at = 15
for i = 1, count do
  local id, base = ARGV[at], first + stride * (i - 1)
  local job = KEYS[base + 1]
  local owner = mode ~= '' and owner_of(KEYS[base + lock]) or nil
  if owner then
    -- a duplicate: its job is the owner, whether an earlier request or this one wrote it
    duplicates[#duplicates + 1] = i
    duplicates[#duplicates + 1] = owner
  else
    redis.call('SADD', KEYS[1], KEYS[2])
    redis.call('HSET', job, unpack(ARGV, at + 3, at + 2 + width))
    if deferred then
      -- RQ's setup_dependencies: the job waits in the deferred registry for its dependencies
      redis.call('HSET', job, 'status', 'deferred')
      redis.call('HDEL', job, 'enqueued_at')
      redis.call('ZADD', KEYS[10], ARGV[9], id)
      for d = 1, deps do
        redis.call('SADD', KEYS[11 + deps + d], id)
        redis.call('SADD', KEYS[base + 2], string.sub(KEYS[11 + d], JOB_PREFIX_LENGTH + 1))
      end
    elseif cap > 0 then
      -- RQ's Queue._enqueue_rate_limited_job: register the RateLimit, wait in its rate_limited set,
      -- then its ACQUIRE_AND_ENQUEUE_SCRIPT: fill the free slots, oldest first
      local config, allowed = KEYS[base + limits], KEYS[base + limits + 1]
      local waiting = KEYS[base + limits + 2]
      redis.call('SADD', KEYS[11], string.sub(config, RL_PREFIX_LENGTH + 1))
      redis.call('HSET', config, 'concurrency', cap)
      redis.call('ZADD', waiting, ARGV[9], id)
      while redis.call('ZCARD', allowed) < cap do
        local popped = redis.call('ZPOPMIN', waiting)
        if #popped == 0 then break end
        local next_id = popped[1]
        local next_job = 'JOB_HASH_PREFIX' .. next_id
        local fields = redis.call('HMGET', next_job, 'origin', 'status', 'enqueue_at_front')
        if fields[1] and fields[2] == 'rate_limited' then
          redis.call('ZADD', allowed, ARGV[9], next_id)
          redis.call(fields[3] == '1' and 'LPUSH' or 'RPUSH', 'QUEUE_KEY_PREFIX' .. fields[1], next_id)
          redis.call('HSET', next_job, 'status', 'queued', 'enqueued_at', ARGV[14])
          local wake = 'WAKE_PREFIX' .. fields[1]
          redis.call('RPUSH', wake, '1')
          redis.call('LTRIM', wake, -MAX_TOKENS, -1)
          promoted[#promoted + 1] = next_id
        end
      end
    else
      if how == 'ZADD' then
        redis.call('ZADD', KEYS[3], ARGV[at + 1], id)
      else
        redis.call(how, KEYS[3], id)
      end
    end
    if mode ~= '' then redis.call('SET', KEYS[base + lock], id, 'EX', ARGV[12]) end
    listed[#listed + 1] = ARGV[at + 2]
    listed[#listed + 1] = id
    written = written + 1
  end
  at = at + 3 + width
end
if written > 0 then
  for k = 4, 6 do
    -- in slices: Lua's unpack takes a few thousand values at most
    for slice = 1, #listed, 1000 do
      redis.call('ZADD', KEYS[k], unpack(listed, slice, math.min(slice + 999, #listed)))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', trim)
  end
  redis.call('HINCRBY', KEYS[7], counter, written)
  if how ~= 'ZADD' and not deferred and cap == 0 then
    for i = 1, math.min(written, MAX_TOKENS) do redis.call('RPUSH', KEYS[8], '1') end
    redis.call('LTRIM', KEYS[8], -MAX_TOKENS, -1)
  end
end
if record ~= '' then
  if #duplicates > 0 then
    -- a replay must name the jobs this request got, and which of them it did not write
    local stored = cjson.decode(record)
    stored['duplicates'] = {}
    for k = 1, #duplicates, 2 do
      stored['job_ids'][duplicates[k]] = duplicates[k + 1]
      table.insert(stored['duplicates'], duplicates[k] - 1)
    end
    record = cjson.encode(stored)
  end
  redis.call('SET', KEYS[9], record, 'EX', ARGV[8])
end
local reply = {'written', written, deferred and 'deferred' or 'as asked', #promoted}
for _, value in ipairs(promoted) do reply[#reply + 1] = value end
for _, value in ipairs(duplicates) do reply[#reply + 1] = value end
return reply
"""
WRITE_SCRIPT = (
    WRITE_SCRIPT.replace("MAX_TOKENS", str(MAX_TOKENS))
    .replace("JOB_PREFIX_LENGTH", str(len(JOB_KEY_PREFIX)))
    .replace("JOB_HASH_PREFIX", JOB_KEY_PREFIX)
    .replace("RL_PREFIX_LENGTH", str(len(concurrency_keys("")[0])))
    .replace("QUEUE_KEY_PREFIX", queue_key(""))
    .replace("WAKE_PREFIX", wake_key(""))
)
WRITE_SCRIPT_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis' script id)
_EVALSHA = Packed(["EVALSHA", WRITE_SCRIPT_SHA])


@dataclass(slots=True)
class NewJob:
    """A job as the enqueue wrote it: what RQ would read back from its hash right away."""

    id: str
    queue: str
    kwargs: dict[str, Any]
    status: str  # queued, scheduled, deferred or rate_limited when written; read back, whatever it is now
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
    carried: dict[str, Any] | None = None,
) -> Write:
    """The script call that writes one job per input, with these options, all or none; `carried` is
    what the request adds to each job's meta (service/tracing.py `sending`: its id, its trace)."""
    template = template_for(registered, options)
    runs, width, meta = template.runs, template.width, template.meta
    own_meta: tuple[str, bytes] | tuple[()] = ()
    if carried:
        # The template's meta, less what it packed, and the request's after the rest, encoded once.
        meta = {**template.meta, **carried}
        runs, width = template.bare_runs, template.bare_width + 2
        own_meta = ("meta", JSON.dumps(meta))
    stamp = now()  # RQ stamps creation and enqueueing apart; one instant does for both here
    formatted = utcformat(stamp)
    due = due_score(options.at) if options.at is not None else None
    first = int(stamp.timestamp() * 1_000_000)
    ids = [str(uuid.uuid4()) for _ in inputs]
    record = json.dumps({"fingerprint": fingerprint, "job_ids": ids}) if idempotency is not None else ""
    deps = options.depends_on
    unique = registered.unique
    keys: list[Any] = [template.keys, idempotency.redis_key if idempotency is not None else ""]
    keys += [template.deferred, RL_KEYS_KEY, *map(job_key, deps), *map(dependents_key, deps)]
    args: list[Any] = [
        template.how,
        first - INDEX_RETENTION_SECONDS * 1_000_000,
        template.counter,
        width,
        len(deps),
        "1" if options.allow_failure else "",
        record,
        idempotency.ttl if idempotency is not None else 0,
        int(stamp.timestamp()),  # RQ's current_timestamp(), the deferred registry's score
        *(unique.script_args(stamp, due) if unique is not None else NOT_UNIQUE),
        template.capped,
        formatted,
    ]
    jobs = []
    for n, (job_id, kwargs) in enumerate(zip(ids, inputs, strict=True)):
        data = zlib.compress(JSON.dumps((template.func_name, None, (), kwargs)))
        description = get_call_string(template.func_name, (), kwargs, max_length=75)
        own = {template.created_at: formatted, template.data: data, template.description: description}
        if template.enqueued_at is not None:
            own[template.enqueued_at] = formatted
        keys += (job_key(job_id), dependencies_key(job_id))
        if unique is not None:
            keys.append(unique.lock_key(registered.name, kwargs))
        if template.rate_limit_key is not None:  # capped: RQ's RateLimit, per key value
            key = cap_key(registered, kwargs)
            own[template.rate_limit_key] = key
            if template.capped:
                keys += concurrency_keys(key)
        if template.rate is not None:
            own[template.rate] = rate_spec(registered, kwargs)
        args += (job_id, "" if due is None else due, first + n, runs[0])
        for slot, run in zip(template.slots, runs[1:], strict=True):
            args += (own[slot], run)
        args += own_meta
        jobs.append(
            NewJob(
                id=job_id,
                queue=template.queue,
                kwargs=kwargs,
                status=template.status,
                created_at=stamp,
                enqueued_at=None if template.scheduled or template.capped else stamp,
                due=due,
                timeout=template.timeout,
                retries_left=template.retries_left,
                meta=dict(meta),
                depends_on=list(deps),
            )
        )
    key_count = len(keys) - 1 + len(template.keys.args)  # the template's keys are one run
    command = [_EVALSHA, key_count, *keys, *args]
    return Write(command=command, jobs=jobs, fingerprint=fingerprint)


def deferred(jobs: list[NewJob]) -> list[NewJob]:
    """The jobs as the script wrote them when a dependency was unmet (RQ's deferred state)."""
    return [replace(job, status=JobStatus.DEFERRED.value, enqueued_at=None) for job in jobs]


def promoted(jobs: list[NewJob], ids: set[str]) -> list[NewJob]:
    """The jobs as the script wrote them, those a cap's free slots let through queued at once."""
    return [
        replace(job, status=JobStatus.QUEUED.value, enqueued_at=job.created_at) if job.id in ids else job
        for job in jobs
    ]
