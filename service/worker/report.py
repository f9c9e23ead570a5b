"""Reports of each run of a job: a log line at its start and at its end, and the
end counted in Redis for /metrics (`offload_job_runs_total{job, outcome}`).

Outcomes: `finished`; `failed` (final); `retried` (failed, and RQ runs it again); `stopped` (by a
cancel); `retry_after` (the job asked to run again later: service/flow.py). RQ decides which in the
`handle_job_*` methods: this reads the job's status after them.
A run that a stopping worker cuts short and requeues is `interrupted`, reported by service/worker/shutdown.py.
Reporting never fails a job: a broken report is a warning in the log.

The request that enqueued the job (its `request_id`, kept in the job's meta) is carried by both
lines and, in the thread that runs the job, by every line logged from its start to its end. With
tracing on, the run is a span from the start to the end (service/worker/trace.py).

Runs that no worker sees end (a worker killed with SIGKILL) are not counted here: RQ finds them
abandoned later, and `offload_jobs{status="failed"}` shows them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from rq.job import Job, JobStatus
from rq.utils import now
from rq.worker import BaseWorker

from service.logs import fields, request_id_var
from service.store.enqueue import count_event
from service.tracing import REQUEST_ID_META
from service.worker.job import registered_job
from service.worker.trace import end_run, start_run

log = logging.getLogger("offload.job")

RETRY_AFTER = "retry_after"

# The job label of a job whose function is not in the catalogue (workers refuse to run it): job
# names start with a letter, so no registered job can be called this.
UNREGISTERED = "(unregistered)"


def job_name(job: Job) -> str:
    """The job's catalogue name, found the way the worker resolves its function."""
    try:
        found = registered_job(job)
    except Exception:  # a job that is not JSON
        return UNREGISTERED
    return found.name if found is not None else UNREGISTERED


# RQ's own INFO lines for each job, which `job started` and `job ended` say again with the job's
# name and outcome: one job would log six lines, and a fast job spend more time logging than running.
RQ_JOB_LINES = frozenset(
    {
        "Worker %s: %s: %s",  # taken from a queue
        "Worker %s: %s: %s (%s)",  # Job OK
        "Successfully completed job %s in %ss on worker %s",
        "Successfully completed %s job in %ss on worker %s",
    }
)


def _not_an_rq_job_line(record: logging.LogRecord) -> bool:
    return record.levelno > logging.INFO or record.msg not in RQ_JOB_LINES


def quiet_rq_job_lines() -> None:
    """Drop RQ's per-job INFO lines (the worker's `job started` and `job ended` say the same)."""
    rq_log = logging.getLogger("rq.worker")
    if _not_an_rq_job_line not in rq_log.filters:
        rq_log.addFilter(_not_an_rq_job_line)


def report_start(worker: BaseWorker, job: Job) -> None:
    """Log `job started`, and start the run's span; never fails the job."""
    try:
        details = _job_fields(worker, job)
        request_id_var.set(details.get("request_id"))  # this thread's lines until the end: the job's
        start_run(job, details["job"])
        log.info("job started", extra=fields(**details))
    except Exception:  # a report must never cost a job its run
        log.warning("could not report the start of job %s", job.id, exc_info=True)


def report_end(worker: BaseWorker, job: Job, outcome: str, counted: bool = False) -> None:
    """Log `job ended` with its outcome and duration, count the end unless `counted` already, and end
    the run's span."""
    try:
        details = _job_fields(worker, job)
        if not counted:
            count_event(worker.connection, details["job"], outcome)
        started, ended = job.started_at, job.ended_at or now()
        duration = (ended - started).total_seconds() if isinstance(started, datetime) else None
        level = logging.INFO if outcome in ("finished", "retried", RETRY_AFTER) else logging.WARNING
        log.log(
            level,
            "job ended",
            extra=fields(
                **details,
                outcome=outcome,
                duration_ms=round(duration * 1000, 1) if duration is not None else None,
            ),
        )
        end_run(job, details["job"], outcome, flush=worker.is_horse)  # a horse exits with os._exit
    except Exception:
        log.warning("could not report the end of job %s (%s)", job.id, outcome, exc_info=True)
    finally:
        request_id_var.set(None)


def _job_fields(worker: BaseWorker, job: Job) -> dict[str, Any]:
    found = {"job_id": job.id, "job": job_name(job), "queue": job.origin, "worker": worker.name}
    request_id = job.meta.get(REQUEST_ID_META)
    if isinstance(request_id, str):
        found["request_id"] = request_id
    return found


def failure_outcome(job: Job) -> str:
    """What RQ made of a failed run: the status it saved, read from the job as it left it."""
    status = job.get_status(refresh=False)
    if status == JobStatus.STOPPED:
        return "stopped"
    if status == JobStatus.FAILED:
        return "failed"
    return "retried"  # RQ queued or scheduled it again
