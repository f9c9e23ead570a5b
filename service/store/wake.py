"""Queues whose pushes wake an idle worker: a token on the queue's wake list for each push.

A worker takes a job by moving its id atomically from the queue to the queue's intermediate list
(service/store/queues.py), so a worker killed at any moment leaves the id somewhere recoverable. Redis
can block on one list for such a move, not on several; a worker on several queues blocks instead
on their wake lists, and every producer pushes a token there in the same transaction as the job.
A token only says "look now": a worker that wakes to find nothing looks again, and one that
misses a token (a job pushed by a producer that adds none) finds the job at its next look, at
most WAKE_POLL_SECONDS later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rq import Queue

from service.store.layout import due_score, wake_key

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import Pipeline
    from rq.job import Job

# A burst of pushes while every worker is busy leaves tokens that nobody takes: keep a few, since
# a worker that finds its queues empty drops them all anyway.
MAX_TOKENS = 64


def wake(pipe: Redis | Pipeline, queue_name: str, jobs: int = 1) -> None:
    """Wake up to `jobs` idle workers of `queue_name`; inside the transaction that pushes the jobs."""
    key = wake_key(queue_name)
    pipe.rpush(key, *["1"] * max(1, min(jobs, MAX_TOKENS)))
    pipe.ltrim(key, -MAX_TOKENS, -1)


class WakingQueue(Queue):
    """RQ's queue, waking an idle worker for each job it pushes (retries, requeues, dependents)."""

    def push_job_id(self, job_id: str, pipeline: Pipeline | None = None, at_front: bool = False) -> Any:
        if pipeline is not None:
            super().push_job_id(job_id, pipeline=pipeline, at_front=at_front)
            wake(pipeline, self.name)
            return None
        with self.connection.pipeline() as pipe:  # the push and its token: both or neither
            super().push_job_id(job_id, pipeline=pipe, at_front=at_front)
            wake(pipe, self.name)
            pipe.execute()
        return None

    def schedule_job(
        self, job: Job, at: datetime, pipeline: Pipeline | None = None, unique: bool = False
    ) -> Job:
        """RQ's schedule, due no earlier than asked (a retry's interval, a `retry_after`): RQ scores
        the time rounded down to the second, this rounds it up (due_score)."""
        due = datetime.fromtimestamp(due_score(at), UTC)
        return super().schedule_job(job, due, pipeline=pipeline, unique=unique)
