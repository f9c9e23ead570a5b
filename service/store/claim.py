"""The claim of taken jobs as one script with arguments: RQ's writes for a run's start, key by key.

A claim used to be RQ's own calls (`Execution.create`, `Job.prepare_for_execution`) recorded on a
pipeline and sent as commands (service/store/atomic.py): about 60 µs of Python and 60 arguments per
job, the largest part of a concurrent worker's CPU per no-op job after the run itself. Here the same
writes are made by one registered script from a dozen arguments per job. The arguments (keys,
scores, expiries) are computed by RQ's own key templates and formulas; tests/unit/test_claim.py
holds what the script leaves in Redis equal to what RQ's own calls leave, key by key, so an RQ
upgrade that changes them fails there first.

Each job's claim holds only if the job is still queued (not canceled or deleted since it was taken)
and its id is still on the intermediate list (not given back by a sweep): only then is it this
worker's to run; else nothing of it is written. A claim marks itself applied (layout.applied_key):
the same call sent again by redis-py, its reply lost, reports it claimed instead of lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.utils import current_timestamp, now, utcformat

from service.connection import script
from service.store.atomic import Command
from service.store.layout import (
    APPLIED_SECONDS,
    applied_key,
    events_channel,
    intermediate_key,
    registry_score,
    started_key,
    worker_runs_key,
)

if TYPE_CHECKING:
    from redis import Redis

# ARGV: the worker's name, its execution index, how long an applied mark lasts, the run's start (a
# Unix time, for RQ's execution hash), the same as RQ's ISO time (for the job's hash), RQ's queued
# and started statuses, the number of jobs; then FIELDS arguments per job (`_job_arguments`); then
# the number of trailing commands (the worker's own writes, run whatever became of the claims) and,
# per command, its length and arguments. Returns one 1 (claimed, or claimed by an earlier call of
# the same script) or 0 (not this worker's: nothing written) per job.
FIELDS = 12
_CLAIM = """
local worker, index, mark_seconds, created, iso = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local queued, started = ARGV[6], ARGV[7]
local at = 9
local ran = {}
for j = 1, tonumber(ARGV[8]) do
  local id, run, ttl, run_key, runs_key, runs_score, started_key, started_score, intermediate, job,
    channel, mark = unpack(ARGV, at, at + FIELDS - 1)
  at = at + FIELDS
  if redis.call('EXISTS', mark) == 1 then
    ran[j] = 1
  elseif redis.call('HGET', job, 'status') ~= queued or redis.call('LREM', intermediate, 1, id) ~= 1 then
    ran[j] = 0
  else
    local entry = id .. ':' .. run
    -- Execution.create: the run's hash, its job's execution registry, the started registry, the
    -- worker's execution index
    redis.call('HSET', run_key, 'id', run, 'job_id', id, 'created_at', created, 'last_heartbeat', created,
      'worker_name', worker)
    redis.call('EXPIRE', run_key, ttl)
    redis.call('ZADD', runs_key, runs_score, run)
    redis.call('EXPIRE', runs_key, tonumber(ttl) + 60)
    redis.call('ZADD', started_key, started_score, entry)
    if worker ~= '' then
      redis.call('SADD', index, entry)
      redis.call('EXPIRE', index, tonumber(ttl) + 60)
    end
    -- Job.prepare_for_execution, then offload's: the job kept while it runs, its start announced
    redis.call('HSET', job, 'last_heartbeat', iso, 'status', started, 'started_at', iso,
      'worker_name', worker)
    redis.call('PERSIST', job)
    redis.call('PUBLISH', channel, 'started')
    redis.call('SET', mark, '1', 'EX', mark_seconds)
    ran[j] = 1
  end
end
for _ = 1, tonumber(ARGV[at]) do
  local length = tonumber(ARGV[at + 1])
  redis.call(unpack(ARGV, at + 2, at + 1 + length))
  at = at + 1 + length
end
return ran
""".replace("FIELDS", str(FIELDS))


@dataclass
class Claim:
    """One job to claim, with the length of its run's heartbeat (the worker's get_heartbeat_ttl)."""

    job: Job
    ttl: int


def claim_runs(
    connection: Redis, worker_name: str, claims: Sequence[Claim], trailing: Sequence[Command] = ()
) -> list[Execution | None]:
    """Claim the jobs in one round trip; for each its run (RQ's Execution), or None where the claim did
    not hold. `trailing` runs after them, whatever became of each claim. On a claim that held, the
    job object reads as RQ's prepare_for_execution leaves it."""
    moment = now()
    stamp = current_timestamp()
    iso = utcformat(moment)
    index = worker_runs_key(worker_name)
    argv: list[Any] = [
        worker_name,
        index,
        APPLIED_SECONDS,
        moment.timestamp(),
        iso,
        JobStatus.QUEUED.value,
        JobStatus.STARTED.value,
        len(claims),
    ]
    executions: list[Execution] = []
    for claim in claims:
        execution = Execution(uuid4().hex, claim.job.id, claim.job.connection, worker_name)
        execution.created_at = execution.last_heartbeat = moment
        execution._job = claim.job
        argv.extend(_job_arguments(claim, execution, stamp))
        executions.append(execution)
    argv.append(len(trailing))
    for command in trailing:
        argv.append(len(command))
        argv.extend(command)
    ran = script(connection, _CLAIM)(keys=[], args=argv, client=connection)
    claimed: list[Execution | None] = []
    for claim, execution, held in zip(claims, executions, ran, strict=True):
        if not held:
            claimed.append(None)
            continue
        job = claim.job
        job.worker_name = worker_name
        job.last_heartbeat = job.started_at = moment
        job._status = JobStatus.STARTED
        claimed.append(execution)
    return claimed


def _job_arguments(claim: Claim, execution: Execution, stamp: int) -> list[Any]:
    """A job's FIELDS arguments: its id, its run's, the heartbeat's length, then RQ's keys and scores."""
    job, ttl = claim.job, claim.ttl
    return [
        job.id,
        execution.id,
        ttl,
        execution.key,
        ExecutionRegistry.key_template.format(job.id),
        stamp + ttl + 60,  # ExecutionRegistry.add
        started_key(job.origin),  # job.started_job_registry's
        registry_score(ttl, stamp),  # StartedJobRegistry.add_execution's
        intermediate_key(job.origin),
        job.key,
        events_channel(job.id),
        applied_key("claim", execution.id),
    ]
