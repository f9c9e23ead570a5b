"""Periodic jobs as RQ's cron sees them: when each is due, and when it last and next runs.

Shared by the clock process (which enqueues them) and the web (whose catalogue shows them), so
both compute the same times.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import cron_job_registry
from rq.cron import CronJob
from rq.defaults import DEFAULT_CRON_JOB_HISTORY_LIMIT, DEFAULT_CRON_JOB_HISTORY_TTL
from rq.job import Job
from rq.utils import now

from service.catalog import RegisteredJob, Registry

log = logging.getLogger("service.clock")


class ScheduledJob(CronJob):
    """RQ's cron job for a registered job with a schedule, enqueued through offload's path."""

    def __init__(self, registered: RegisteredJob[..., Any]) -> None:
        schedule = registered.schedule
        if schedule is None:
            raise ValueError(f"job {registered.name!r} has no schedule")
        defaults = registered.defaults
        super().__init__(
            queue_name=defaults.queue,
            func=registered.func,
            kwargs=dict(schedule.input),
            interval=schedule.every,
            cron=schedule.cron,
            job_timeout=defaults.timeout,
            result_ttl=defaults.result_ttl,
            failure_ttl=defaults.failure_ttl,
            name=registered.name,  # the public name keys RQ's history: rq:cron_job:<name>:jobs
        )
        self.registered = registered

    def describe(self) -> str:
        return f"cron {self.cron!r}" if self.cron else f"every {self.interval} s"

    def resume(self, last: datetime | None) -> None:
        """Carry on from the last enqueue any clock recorded (None: never).

        An interval job is next due `every` seconds after it, so a restart or a takeover neither
        repeats it early nor delays it; one that never ran is due at once. A cron job is due at
        the next tick from now: a tick that passed while no clock ran is skipped, as RQ does. The
        tick is counted from `last` when that is later than now (a clock whose time ran ahead
        recorded it), so no tick runs twice.
        """
        if self.cron:
            current = now()
            self.latest_enqueue_time = max(last, current) if last else current
            self.next_enqueue_time = self.get_next_enqueue_time()
        else:
            assert self.interval is not None  # a CronJob has a cron expression or an interval
            self.next_enqueue_time = last + timedelta(seconds=self.interval) if last else None
        self.latest_enqueue_time = last

    def enqueue(self, connection: Redis) -> Job:
        """Enqueue a run as the API would, then record it where RQ's cron tools look."""
        job = self.registered.enqueue(connection, **self.kwargs)
        stamp = (job.enqueued_at or now()).timestamp()
        with connection.pipeline() as pipe:
            pipe.zadd(self.job_history_key, {job.id: stamp})
            pipe.zremrangebyrank(self.job_history_key, 0, -(DEFAULT_CRON_JOB_HISTORY_LIMIT + 1))
            pipe.expire(self.job_history_key, DEFAULT_CRON_JOB_HISTORY_TTL)
            cron_job_registry.add(self.name, pipe, enqueue_timestamp=stamp)
            pipe.execute()
        log.info("enqueued %s as job %s on queue %s (%s)", self.name, job.id, job.origin, self.describe())
        return job


def scheduled_jobs(registry: Registry) -> list[ScheduledJob]:
    return [ScheduledJob(registered) for registered in registry if registered.schedule is not None]


def last_enqueued(connection: Redis, names: Sequence[str]) -> dict[str, datetime | None]:
    """When a clock last enqueued each of these jobs, from RQ's cron registry, in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zscore(cron_job_registry.get_registry_key(), name)
        scores: list[float | None] = pipe.execute()
    return {
        name: datetime.fromtimestamp(score, UTC) if score is not None else None
        for name, score in zip(names, scores, strict=True)
    }


@dataclass(frozen=True)
class Runs:
    last: datetime | None  # when a clock last enqueued it; None: never, or unknown
    next: datetime | None  # when the clock enqueues it next; None: an interval job, at the clock's start


def runs(registry: Registry, connection: Redis | None) -> dict[str, Runs]:
    """Each scheduled job's last and next run as the clock computes them (no connection: without
    the history, so interval jobs have no next run)."""
    scheduled = scheduled_jobs(registry)
    names = [job.name for job in scheduled]
    last = last_enqueued(connection, names) if connection is not None and names else {}
    found: dict[str, Runs] = {}
    for job in scheduled:
        job.resume(last.get(job.name))
        found[job.name] = Runs(last=job.latest_enqueue_time, next=job.next_enqueue_time)
    return found
