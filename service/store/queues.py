"""How a worker takes a job so that no kill, at any moment, loses it.

RQ's worker on several queues takes a job with BLPOP: from the moment Redis answers until the
worker records the run, the id lives only in the worker's memory, and a worker killed then loses
the job for good. Here a worker takes the first job of its queues, in priority order, by moving
its id into that queue's intermediate list in one Lua script (RQ itself does so only for a worker
on a single queue). The worker then claims it (service/worker/recovery.py): the run recorded, the job
marked started and the id removed from the intermediate list, in one transaction. An id left in an
intermediate list, neither claimed nor taken back for INTERMEDIATE_GRACE_SECONDS, is from a worker
that died in between: a maintenance sweep puts it back at the front of its queue, unrun.

With nothing to take, the worker blocks on its queues' wake lists (service/store/wake.py). The take
skips paused queues (service/store/pause.py): their jobs stay queued until a resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rq.exceptions import DequeueTimeout
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.utils import as_text, backend_class, now

from service.store.expiry import sweep
from service.store.layout import JOB_KEY_PREFIX, PAUSED_KEY, wake_key
from service.store.wake import WakingQueue

if TYPE_CHECKING:
    from redis import Redis
    from rq.worker import BaseWorker

# An idle worker looks at its queues at least this often: jobs pushed by producers that add no
# wake token (RQ's scheduler moving a job that is due, rq-dashboard's requeue) wait at most this.
WAKE_POLL_SECONDS = 0.5
# A live worker claims the job it took within milliseconds; an id unclaimed this long after a
# sweep first saw it is from a worker that died before its claim.
INTERMEDIATE_GRACE_SECONDS = 10

# KEYS: n queue lists, then their n intermediate lists, then their n wake lists, then the paused set.
# ARGV: the n queue names.
# Takes the first id of the first non-empty queue that is not paused into its intermediate list, and
# returns it with the job's hash (one round trip less; the hash's key is RQ's, derived from the id:
# not for Redis Cluster, which RQ does not support either). With nothing to take, drops the wake
# tokens: they announce jobs that are gone already, or on a paused queue (its resume pushes new ones).
_TAKE = """
local n = (#KEYS - 1) / 3
local paused = KEYS[#KEYS]
for i = 1, n do
  if redis.call('SISMEMBER', paused, ARGV[i]) == 0 then
    local id = redis.call('LMOVE', KEYS[i], KEYS[n + i], 'LEFT', 'RIGHT')
    if id then return {i, id, redis.call('HGETALL', 'JOB_KEY_PREFIX' .. id)} end
  end
end
redis.call('DEL', unpack(KEYS, 2 * n + 1, 3 * n))
return false
""".replace("JOB_KEY_PREFIX", JOB_KEY_PREFIX)

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
            keys = [self.key, self.queue.key, wake_key(self.queue.name)]
            if self.connection.eval(_GIVE_BACK, 3, *keys, job_id):
                worker.log.warning(
                    "job %s: its worker died before running it; back on %s", job_id, queue.name
                )
            self.connection.delete(self.get_first_seen_key(job_id))
        # The queue's expired jobs too, paused or not: a job no worker reaches must not read
        # `queued` past its ttl (service/store/expiry.py).
        sweep(self.connection, self.queue.name, getattr(worker.job_class, "registry", None))


class SafeQueue(WakingQueue):
    """A queue a worker takes jobs from through the intermediate list, on any number of queues."""

    @property
    def intermediate_queue(self) -> RecoveringIntermediateQueue:
        return RecoveringIntermediateQueue(self)

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
        queues = list(queues)
        keys = _take_keys(queues)
        names = [queue.name for queue in queues]
        deadline = time.monotonic() + timeout if timeout is not None else None
        while True:
            taken: Any = connection.eval(_TAKE, len(keys), *keys, *names)
            if taken:
                index, job_id, stored = int(taken[0]) - 1, as_text(taken[1]), taken[2]
                if not stored:  # its job is gone (deleted, expired)
                    connection.lrem(queues[index].intermediate_queue_key, 1, job_id)
                    continue
                # What RQ's _fetch_dequeued_job makes of it, from the hash the script read.
                job_cls: type[Job] = backend_class(cls, "job_class", override=job_class)
                queue = cls.from_queue_key(
                    queues[index].key,
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
                    raise
                return job, queue
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, [queue.key for queue in queues])
            connection.blpop([wake_key(queue.name) for queue in queues], min(left, WAKE_POLL_SECONDS))


def _take_keys(queues: Sequence[WakingQueue]) -> list[str]:
    return (
        [queue.key for queue in queues]
        + [queue.intermediate_queue_key for queue in queues]
        + [wake_key(queue.name) for queue in queues]
        + [PAUSED_KEY]
    )
