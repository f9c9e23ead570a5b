"""Reading jobs back from Redis: the API's view of a job, and waiting for one to end."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.results import Result
from rq.serializers import JSONSerializer

from jobs.registry import Registry
from service.errors import JobNotFoundError
from service.schemas import JobError, JobProgress, JobView

TERMINAL = frozenset({"finished", "failed", "stopped", "canceled"})
# A wait blocks on the job's result stream in slices this long, then re-reads the status, so
# state changes that write no result (a cancel) are seen within one slice.
WAIT_SLICE_MS = 1000


def fetch_job(connection: Redis, job_id: str) -> Job:
    """The job, or a 404 error."""
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        raise JobNotFoundError(job_id) from None


def job_view(job: Job, registry: Registry) -> JobView:
    """What the API shows of a job; reads the latest result only when the job has ended."""
    status = job.get_status(refresh=False)
    status_text = status.value if status is not None else "unknown"
    registered = registry.by_path(job.func_name)
    result: Any = None
    error: JobError | None = None
    if status_text in TERMINAL:
        latest = job.latest_result()
        if latest is not None and latest.type == Result.Type.SUCCESSFUL:
            result = latest.return_value
        elif status_text in ("failed", "stopped"):
            error = _error(job, latest)
    progress = job.meta.get("progress")
    return JobView(
        id=job.id,
        name=registered.name if registered else None,
        status=status_text,
        queue=job.origin,
        input=job.kwargs,
        result=result,
        error=error,
        progress=JobProgress.model_validate(progress) if isinstance(progress, dict) else None,
        created_at=job.created_at,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        worker=job.worker_name,
        timeout=int(job.timeout) if job.timeout is not None else None,
        retries_left=job.retries_left,
        url=f"/jobs/{job.id}",
    )


def _error(job: Job, latest: Result | None) -> JobError:
    """The job function records its exception's type and message (jobs/registry.py); failures
    outside it (a timeout, a killed work horse) leave only RQ's traceback, whose last line says."""
    recorded = job.meta.get("error")
    if isinstance(recorded, dict) and {"type", "message"} <= recorded.keys():
        return JobError(type=str(recorded["type"]), message=str(recorded["message"]))
    text = (latest.exc_string if latest is not None else None) or ""
    if "AbandonedJobError" in text:
        return JobError(
            type="AbandonedJobError", message="the worker running this job stopped before it ended"
        )
    last = next((line for line in reversed(text.strip().splitlines()) if line.strip()), "")
    kind, sep, message = last.partition(": ")
    if not sep or " " in kind:
        return JobError(type="Error", message=last or f"the job ended {job.get_status(refresh=False)}")
    return JobError(type=kind.rsplit(".", 1)[-1], message=message)


def wait_for_end(connection: Redis, job: Job, seconds: float) -> Job:
    """Block until the job ends or `seconds` pass, woken by the worker writing its result."""
    deadline = time.monotonic() + seconds
    stream = Result.get_key(job.id)
    last_seen = _last_entry(connection, stream)
    while (job.get_status(refresh=True) or "") not in TERMINAL:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            break
        entries: Any = connection.xread({stream: last_seen}, block=min(left_ms, WAIT_SLICE_MS))
        if entries:
            last_seen = entries[0][1][-1][0]
    try:
        job.refresh()
    except NoSuchJobError:
        raise JobNotFoundError(job.id) from None
    return job


def _last_entry(connection: Redis, stream: str) -> bytes | str:
    newest: Any = connection.xrevrange(stream, count=1)
    return newest[0][0] if newest else "0-0"
