"""How soon a job cut off by a killed worker runs again: heartbeats and maintenance sweeps.

A forking worker refreshes its running job's heartbeat every JOB_MONITORING_INTERVAL seconds; the
job's entry in RQ's started registry lapses HEARTBEAT_MARGIN seconds after the last refresh. Every
MAINTENANCE_INTERVAL seconds one worker sweeps the registries: a lapsed job is abandoned, retried
if it has retries left (after its backoff interval), else failed with AbandonedJobError. An idle
worker sweeps when its wait for work times out, every WORKER_TTL - 15 = 15 s; so a sweep comes at
most two intervals after the entry lapsed, and a job whose worker was SIGKILLed is found at most
5 + 15 + 2 x 15 = 50 s after the kill (RQ's defaults: 30 s heartbeats, a 60 s margin and 10-minute
sweeps, about 11 minutes).
"""

from __future__ import annotations

from typing import Any

from rq.job import Job
from rq.worker import BaseWorker

JOB_MONITORING_INTERVAL = 5
HEARTBEAT_MARGIN = 15
MAINTENANCE_INTERVAL = 15
# A killed worker drops out of GET /workers and `rq info` this long after its last heartbeat; RQ
# waits for work WORKER_TTL - 15 seconds at a time, and sweeps only between two waits.
WORKER_TTL = 30
ABANDON_BOUND = JOB_MONITORING_INTERVAL + HEARTBEAT_MARGIN + 2 * MAINTENANCE_INTERVAL


def worker_options() -> dict[str, Any]:
    """The RQ worker arguments that set those intervals."""
    return {
        "job_monitoring_interval": JOB_MONITORING_INTERVAL,
        "maintenance_interval": MAINTENANCE_INTERVAL,
        "worker_ttl": WORKER_TTL,
    }


class PromptRecovery(BaseWorker):
    """A heartbeat that lapses HEARTBEAT_MARGIN seconds after it is due, not RQ's fixed 60."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            interval = min(interval, max(job.timeout - working_time, 0))
        return int(interval) + HEARTBEAT_MARGIN
