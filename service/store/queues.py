"""How a worker takes a job so that no kill, at any moment, loses it.

RQ's worker on several queues takes a job with BLPOP: from the moment Redis answers until the
worker records the run, the id lives only in the worker's memory, and a worker killed then loses
the job for good. Here a worker takes the first job of its queues, in priority order, by moving
its id into that queue's intermediate list in one Lua script (RQ itself does so only for a worker
on a single queue). The worker then claims it (service/worker/recovery.py): the run recorded, the job
marked started and the id removed from the intermediate list, in one transaction. An id left in an
intermediate list, neither claimed nor taken back for INTERMEDIATE_GRACE_SECONDS, is from a worker
that died in between: a maintenance sweep puts it back at the front of its queue, unrun.

With nothing to take, the worker blocks on its queues' wake lists (service/store/wake.py), until a
token comes, WAKE_POLL_SECONDS pass or the first job held by its rate limit is due
(service/store/rates.py), whichever is first. The take skips paused queues (service/store/pause.py):
their jobs stay queued until a resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rq.exceptions import DequeueTimeout, StopRequested
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.utils import as_text, backend_class, now

from service.connection import script
from service.store.expiry import sweep
from service.store.layout import HELD_DUE_KEY, JOB_KEY_PREFIX, PAUSED_KEY, RATE_FIELD, wake_key
from service.store.rates import FUNCTIONS, MAX_HOLDS
from service.store.wake import WakingQueue

if TYPE_CHECKING:
    from redis import Redis
    from rq.worker import BaseWorker

# How long a sweep of a queue may hold RQ's lock on sweeping it (it takes milliseconds; the lock is
# released at its end): what a worker killed mid-sweep delays the next sweep of that queue by.
MAINTENANCE_LOCK_SECONDS = 60
# An idle worker looks at its queues at least this often: jobs pushed by producers that add no
# wake token (RQ's scheduler moving a job that is due, rq-dashboard's requeue) wait at most this.
WAKE_POLL_SECONDS = 0.5
# An idle worker with a held job due soon sleeps until then, but never less than this: no busy loop.
MIN_WAIT_MS = 10
# A live worker claims the job it took within milliseconds; an id unclaimed this long after a
# sweep first saw it is from a worker that died before its claim.
INTERMEDIATE_GRACE_SECONDS = 10

# KEYS: n queue lists, then their n intermediate lists, then their n wake lists, then the paused set.
# ARGV: the n queue names, then how many jobs to take at most.
# First releases the rate-limited jobs whose time came (service/store/rates.py). Then takes the first
# ids of the first non-empty queues that are not paused, in priority order, each into its
# intermediate list, and returns them with their jobs' hashes ({queue index, id, hash} each: one
# round trip less; the hash's key is RQ's, derived from the id: not for Redis Cluster, which RQ does
# not support either). A job over its rate limit is held instead, and the take goes on to the next.
# Returns {taken, wait}: wait is -1 when it took none but held jobs (MAX_HOLDS of them, or one whose
# bucket is due at once): look again at once; with nothing taken, else, the ms until the first held
# job is due (0: none is held). With nothing to
# take, drops the wake tokens: they announce jobs that are gone already, or on a paused queue (its
# resume pushes new ones).
_TAKE = (
    (
        FUNCTIONS
        + """
local n = (#KEYS - 1) / 3
local paused = KEYS[#KEYS]
local want = tonumber(ARGV[n + 1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
release(now)
local taken, holds = {}, 0
for i = 1, n do
  if redis.call('SISMEMBER', paused, ARGV[i]) == 0 then
    while #taken < want and holds < MAX_HOLDS do
      local id = redis.call('LMOVE', KEYS[i], KEYS[n + i], 'LEFT', 'RIGHT')
      if not id then break end
      local job = 'JOB_KEY_PREFIX' .. id
      local spec = redis.call('HGET', job, 'RATE_FIELD')
      if spec and not admit(id, job, spec, now) then
        redis.call('LREM', KEYS[n + i], -1, id)
        holds = holds + 1
      else
        taken[#taken + 1] = {i, id, redis.call('HGETALL', job)}
      end
    end
  end
  if #taken == want or holds >= MAX_HOLDS then break end
end
if #taken > 0 then return {taken, 0} end
local first = redis.call('ZRANGE', 'HELD_DUE_KEY', 0, 0, 'WITHSCORES')
-- a full batch held, or one held behind its key's older jobs in a window with room: again at once
if holds >= MAX_HOLDS or (holds > 0 and tonumber(first[2]) <= now) then return {taken, -1} end
redis.call('DEL', unpack(KEYS, 2 * n + 1, 3 * n))
return {taken, first[2] and math.max(MIN_WAIT_MS, tonumber(first[2]) - now) or 0}
"""
    )
    .replace("JOB_KEY_PREFIX", JOB_KEY_PREFIX)
    .replace("RATE_FIELD", RATE_FIELD)
    .replace("HELD_DUE_KEY", HELD_DUE_KEY)
    .replace("MAX_HOLDS", str(MAX_HOLDS))
    .replace("MIN_WAIT_MS", str(MIN_WAIT_MS))
)

# KEYS: intermediate list, queue list, wake list. ARGV: job id.
# Back to the front of its queue, unless a worker claimed it meanwhile (the LREM finds nothing).
_GIVE_BACK = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('RPUSH', KEYS[3], '1')
  return 1
end
return 0
"""


class RecoveringIntermediateQueue(IntermediateQueue):
    """Gives back, unrun, what a killed worker took but never claimed (RQ would fail it after a minute)."""

    def __init__(self, queue: SafeQueue) -> None:
        super().__init__(queue.key, queue.connection)
        self.queue = queue

    def should_be_cleaned_up(self, job_id: str) -> bool:
        first_seen = self.get_first_seen(job_id)
        return first_seen is not None and now() - first_seen > timedelta(seconds=INTERMEDIATE_GRACE_SECONDS)

    def cleanup(self, worker: BaseWorker, queue: Any) -> None:
        started = set(self.queue.started_job_registry.get_job_ids(cleanup=False))
        for job_id in self.get_job_ids():
            if job_id in started:
                continue
            status = self.connection.hget(Job.key_for(job_id), "status")
            if status is None or as_text(status) != JobStatus.QUEUED.value:
                self.remove(job_id)  # deleted or canceled meanwhile: nothing to give back
                continue
            if self.set_first_seen(job_id) or not self.should_be_cleaned_up(job_id):
                continue
            if give_back(self.connection, self.queue, job_id):
                worker.log.warning(
                    "job %s: its worker died before running it; back on %s", job_id, queue.name
                )
            self.connection.delete(self.get_first_seen_key(job_id))
        # The queue's expired jobs too, paused or not: a job no worker reaches must not read
        # `queued` past its ttl (service/store/expiry.py).
        sweep(self.connection, self.queue.name, getattr(worker.job_class, "registry", None))


class SafeQueue(WakingQueue):
    """A queue a worker takes jobs from through the intermediate list, on any number of queues."""

    @staticmethod
    def stop_requested() -> bool:
        """Whether the worker taking has been asked to stop (its own subclass says, OffloadWorker): a
        take looks before each take script and each wait, and raises StopRequested, from the
        worker's main thread, where no Redis command is half done."""
        return False

    @property
    def intermediate_queue(self) -> RecoveringIntermediateQueue:
        return RecoveringIntermediateQueue(self)

    def acquire_maintenance_lock(self) -> bool:
        """RQ's lock on sweeping this queue, lapsing after MAINTENANCE_LOCK_SECONDS, not RQ's 899 s: a
        worker killed while it swept would otherwise leave its queue's abandoned jobs for 15 minutes."""
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=MAINTENANCE_LOCK_SECONDS))

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: Iterable[WakingQueue],
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Any] | None:
        """The first job of the first queue with one; blocks up to `timeout` seconds (None: not at all)."""
        taken = cls.take(queues, 1, timeout, connection, job_class, serializer, death_penalty_class)
        return taken[0] if taken else None

    @classmethod
    def take(
        cls,
        queues: Iterable[WakingQueue],
        count: int,
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> list[tuple[Job, Any]]:
        """Up to `count` jobs, the first of the first queues with some, in one round trip; blocks up to
        `timeout` seconds for the first (None: not at all, and [] when there is none)."""
        queues = list(queues)
        keys = _take_keys(queues)
        names = [queue.name for queue in queues]
        deadline = time.monotonic() + timeout if timeout is not None else None
        job_cls: type[Job] = backend_class(cls, "job_class", override=job_class)
        while True:
            if cls.stop_requested():
                raise StopRequested()
            reply: Any = script(connection, _TAKE)(keys=keys, args=[*names, count], client=connection)
            found, wait = reply[0], int(reply[1])
            jobs: list[tuple[Job, Any]] = []
            broken: list[tuple[Exception, WakingQueue, str]] = []
            made: dict[str, Any] = {}  # the queue object of each queue jobs came from, made once
            for index, raw_id, stored in found or ():
                source, job_id = queues[int(index) - 1], as_text(raw_id)
                if not stored:  # its job is gone (deleted, expired)
                    connection.lrem(source.intermediate_queue_key, 1, job_id)
                    continue
                # What RQ's _fetch_dequeued_job makes of it, from the hash the script read.
                queue = made.get(source.key)
                if queue is None:
                    queue = made[source.key] = cls.from_queue_key(
                        source.key,
                        connection=connection,
                        job_class=job_cls,
                        serializer=serializer,
                        death_penalty_class=death_penalty_class,
                    )
                job = job_cls(job_id, connection=connection, serializer=serializer)
                try:
                    job.restore(dict(zip(stored[::2], stored[1::2], strict=True)))
                except Exception as exc:
                    exc.job_id = job_id  # type: ignore[attr-defined]  # as RQ reports a bad job
                    exc.queue = queue  # type: ignore[attr-defined]
                    broken.append((exc, source, job_id))
                    continue
                jobs.append((job, queue))
            # A job RQ cannot read is reported (RQ fails it) alone: the first, when it is all there
            # is; the others, and any besides good ones, back at the front of their queues for later.
            reported = broken.pop(0) if broken and not jobs else None
            for _exc, source, job_id in broken:
                give_back(connection, source, job_id)
            if reported is not None:
                raise reported[0]
            if jobs:
                return jobs
            if found or wait < 0:  # every one taken was gone, or a batch held: look again at once
                continue
            if deadline is None:
                return []
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, [queue.key for queue in queues])
            # Until a token comes, or the first held job is due, whichever is first.
            sleep = min(left, WAKE_POLL_SECONDS, wait / 1000 if wait > 0 else WAKE_POLL_SECONDS)
            if cls.stop_requested():
                raise StopRequested()
            connection.blpop([wake_key(queue.name) for queue in queues], sleep)


def give_back(connection: Redis, queue: WakingQueue, job_id: str) -> bool:
    """Put a job taken but not claimed back at the front of its queue, unless claimed meanwhile."""
    keys = [queue.intermediate_queue_key, queue.key, wake_key(queue.name)]
    return bool(script(connection, _GIVE_BACK)(keys=keys, args=[job_id], client=connection))


def _take_keys(queues: Sequence[WakingQueue]) -> list[str]:
    return (
        [queue.key for queue in queues]
        + [queue.intermediate_queue_key for queue in queues]
        + [wake_key(queue.name) for queue in queues]
        + [PAUSED_KEY]
    )
