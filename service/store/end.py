"""The end of successful runs as one script with arguments: RQ's writes for a job's success, key by key.

RQ's `handle_job_success` takes three round trips (WATCH the job's dependents, read them, then the
transaction) and its `handle_execution_ended` one more, for a field the transaction writes again.
Most jobs have no dependents, and then RQ's transaction is all there is to write. Here one
registered script makes those writes for any number of runs, from arguments computed by RQ's own
pieces where they are not plain keys (the job's hash is `Job.to_dict`, the result entry
`Result.serialize`): no RQ call is recorded and replayed per job (service/store/atomic.py), which
cost a concurrent worker more CPU than the run of a no-op job. tests/unit/test_finish.py holds what
the script leaves in Redis equal to what RQ's own end leaves, key by key.

Each end is guarded by its job's dependents key not existing, atomically with its writes: a
dependent enqueued meanwhile either exists before the script (the guard fails, nothing is written,
and RQ's own method runs, with its WATCH) or sees the job finished (the enqueue's script reads its
dependency's status: service/store/write.py). An end marks itself applied (layout.applied_key):
the same call sent again by redis-py, its reply lost, reports it ended instead of running it twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import current_timestamp

from service.connection import script
from service.store.layout import (
    APPLIED_SECONDS,
    COUNTERS_KEY,
    applied_key,
    dependencies_key,
    events_channel,
    finished_key,
    registry_score,
    started_key,
    worker_key,
    worker_runs_key,
)

if TYPE_CHECKING:
    from redis import Redis

# ARGV: how long an applied mark lasts, the number of ends; then, per end, FIXED arguments
# (`End.arguments`: its keys, numbers and expiries, '' where RQ writes none), the number of the
# job hash's fields and its fields and values, the number of the result entry's and its fields and
# values. Returns one 1 (ended, or ended by an earlier call of the same script) or 0 (the job has
# dependents: nothing written, RQ's own end is needed) per end.
FIXED = 22
_END = """
local mark_seconds = ARGV[1]
local at = 3
local ended = {}
for e = 1, tonumber(ARGV[2]) do
  local mark, id, dependents, worker, channel, counters, counter, took, status, job, results, result_expiry,
    finished, finished_score, job_expiry, dependencies, run_key, started, entry, runs, run, worker_index =
    unpack(ARGV, at, at + FIXED - 1)
  at = at + FIXED
  local fields = tonumber(ARGV[at]) * 2
  local hash_at = at + 1
  at = hash_at + fields
  local entries = tonumber(ARGV[at]) * 2
  local result_at = at + 1
  at = result_at + entries
  if redis.call('EXISTS', mark) == 1 then
    ended[e] = 1
  elseif redis.call('EXISTS', dependents) ~= 0 then
    ended[e] = 0
  else
    -- the worker's counts (with offload's announcement and count), then Job._handle_success
    redis.call('HINCRBY', worker, 'successful_job_count', 1)
    redis.call('PUBLISH', channel, 'succeeded')
    redis.call('HINCRBY', counters, counter, 1)
    redis.call('HINCRBYFLOAT', worker, 'total_working_time', took)
    redis.call('HSET', job, 'status', status)
    redis.call('HSET', job, unpack(ARGV, hash_at, hash_at + fields - 1))
    redis.call('XADD', results, 'MAXLEN', '~', '10', '*', unpack(ARGV, result_at, result_at + entries - 1))
    if result_expiry == '-1' then
      redis.call('PERSIST', results)
    else
      redis.call('EXPIRE', results, result_expiry)
    end
    redis.call('ZADD', finished, finished_score, id)
    -- Job.cleanup, then the run's end (Execution.delete)
    if job_expiry ~= '' then
      redis.call('EXPIRE', job, job_expiry)
      redis.call('EXPIRE', dependents, job_expiry)
      redis.call('EXPIRE', dependencies, job_expiry)
    end
    redis.call('DEL', run_key)
    redis.call('ZREM', started, entry)
    redis.call('ZREM', runs, run)
    if worker_index ~= '' then redis.call('SREM', worker_index, entry) end
    redis.call('SET', mark, '1', 'EX', mark_seconds)
    ended[e] = 1
  end
end
return ended
""".replace("FIXED", str(FIXED))


@dataclass
class End:
    """One successful run's end, as the script's arguments."""

    arguments: list[Any]


def success_end(
    job: Job, execution: Execution, worker_name: str, counter: str, result_ttl: int, took: timedelta
) -> End:
    """The end of the job's successful run, as RQ's `handle_job_success` writes it for a job without
    dependents, repeat or rate limit, and a result kept for `result_ttl` seconds (not 0). The job
    object is left finished, as RQ's leaves it."""
    job._status = JobStatus.FINISHED  # Job.set_status, as RQ's end does first
    # RQ's save in _handle_success: "don't clobber user's meta dictionary"
    mapping = job.to_dict(include_meta=False, include_result=False)
    entry = Result(
        job_id=job.id,
        type=Result.Type.SUCCESSFUL,
        connection=job.connection,
        return_value=job._result,
        worker_name=worker_name,
        serializer=job.serializer,
        execution_id=execution.id,
        execution_started_at=execution.created_at,
        execution_ended_at=job.ended_at,
    ).serialize()
    arguments: list[Any] = [
        applied_key("end", execution.id),
        job.id,
        job.dependents_key,
        worker_key(worker_name),
        events_channel(job.id),
        COUNTERS_KEY,
        counter,
        took.total_seconds(),
        JobStatus.FINISHED.value,
        job.key,
        Result.get_key(job.id),
        result_ttl,  # Result.save: -1 persist, else expire
        finished_key(job.origin),
        registry_score(result_ttl, current_timestamp()),  # FinishedJobRegistry.add's
        result_ttl if result_ttl > 0 else "",  # Job.cleanup: expire only if > 0
        dependencies_key(job.id),
        execution.key,
        started_key(job.origin),
        execution.composite_key,
        ExecutionRegistry.key_template.format(job.id),
        execution.id,
        worker_runs_key(worker_name) if worker_name else "",  # Execution.delete: the worker's index
    ]
    arguments.append(len(mapping))
    for field, value in mapping.items():
        arguments.extend((field, value))
    arguments.append(len(entry))
    for field, value in entry.items():
        arguments.extend((field, value))
    return End(arguments)


def end_runs(connection: Redis, ends: Sequence[End]) -> list[bool]:
    """Write the ends in one atomic script call; for each, whether it was written (its job had no
    dependents)."""
    if not ends:
        return []
    argv: list[Any] = [APPLIED_SECONDS, len(ends)]
    for end in ends:
        argv.extend(end.arguments)
    ended = script(connection, _END)(keys=[], args=argv, client=connection)
    return [bool(flag) for flag in ended]
