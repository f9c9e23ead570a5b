"""Reading jobs back from Redis: the API's view of a job, and waiting for one to end."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.results import Result
from rq.utils import as_text

from service.catalog import Registry
from service.flow import FlowControl
from service.schemas import CallbackView, HeldView, JobError, JobProgress, JobView, RetryAfterView
from service.serializer import JSON
from service.store.errors import JobNotFoundError
from service.store.expiry import catalog_name, expire, expired
from service.store.held import held_view
from service.store.layout import HOLD_FIELD, RAN, TERMINAL
from service.store.write import NewJob
from service.tracing import REQUEST_ID_META

# A wait blocks on the job's result stream in slices this long, then re-reads the status, so
# state changes that write no result (a cancel) are seen within one slice.
WAIT_SLICE_MS = 1000
# Where the web's dashboard shows a job (its id appended), or None when it serves none. Set per
# request by service/web/dashboard.py, since views are built far below the routes that know the app.
dashboard_job_page: ContextVar[str | None] = ContextVar("dashboard_job_page", default=None)


def fetch_job(connection: Redis, job_id: str) -> Job:
    """The job, or a 404 error."""
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSON)
    except NoSuchJobError:
        raise JobNotFoundError(job_id) from None


def fetch_jobs(connection: Redis, job_ids: Sequence[str]) -> list[Job]:
    """The jobs that still exist, in order (expired ones are left out)."""
    found = Job.fetch_many(list(job_ids), connection=connection, serializer=JSON)
    return [job for job in found if job is not None]


def job_view(job: Job, registry: Registry) -> JobView:
    """What the API shows of a job."""
    return job_views(job.connection, [job], registry)[0]


def job_views(connection: Redis, jobs: Sequence[Job], registry: Registry) -> list[JobView]:
    """The views of several jobs, with one round trip for what the job hashes lack: the latest
    result of ended jobs, the due time of scheduled ones, whether a rate limit holds queued ones. A
    queued job past its ttl is expired first (service/store/expiry.py): it is shown, and left, canceled."""
    for job in jobs:
        if expired(job):
            expire(connection, job, catalog_name(registry, job))  # else taken meanwhile: as it reads
    statuses = [status_of(job) for job in jobs]
    flows = [_flow(registry, job) for job in jobs]
    with connection.pipeline(transaction=False) as pipe:
        for job, status, flow in zip(jobs, statuses, flows, strict=True):
            if status in TERMINAL:
                pipe.xrevrange(Result.get_key(job.id), count=1)
            elif status == "scheduled":
                pipe.zscore(ScheduledJobRegistry(job.origin, connection=connection).key, job.id)
            elif status == "queued" and flow is not None and flow.rate is not None:
                pipe.hget(job.key, HOLD_FIELD)  # RQ's Job does not read offload's fields
        extras: Iterator[Any] = iter(pipe.execute())
    views = []
    for job, status, flow in zip(jobs, statuses, flows, strict=True):
        latest: Result | None = None
        due: float | None = None
        hold: str | None = None
        if status == "queued" and flow is not None and flow.rate is not None:
            stored_hold = next(extras)
            hold = as_text(stored_hold) if stored_hold is not None else None
        if status in TERMINAL:
            entries = next(extras)
            if entries:
                result_id, payload = entries[0]
                latest = Result.restore(
                    job.id, as_text(result_id), payload, connection=connection, serializer=JSON
                )
        elif status == "scheduled":
            due = next(extras)
        views.append(_view(job, status, latest, due, registry, held_view(flow, status, job.kwargs, hold)))
    return views


def _flow(registry: Registry, job: Job) -> FlowControl | None:
    try:
        registered = registry.by_path(job.func_name)
    except Exception:  # a job that is not JSON
        return None
    return registered.flow if registered is not None else None


def status_of(job: Job) -> str:
    """The job's status as the API spells it."""
    status = job.get_status(refresh=False)
    return status.value if status is not None else "unknown"


def _view(
    job: Job,
    status: str,
    latest: Result | None,
    due: float | None,
    registry: Registry,
    held: HeldView | None,
) -> JobView:
    registered = registry.by_path(job.func_name)
    result: Any = None
    error: JobError | None = None
    if latest is not None and latest.type == Result.Type.SUCCESSFUL and status == "finished":
        result = latest.return_value
    elif status in ("failed", "stopped"):
        error = _error(job, latest)
    elif status == "canceled":  # canceled by offload (expired), not by a request: it says why
        error = _recorded_error(job)
    stored = NewJob(
        id=job.id,
        queue=job.origin,
        kwargs=job.kwargs,
        status=status,
        created_at=job.created_at,
        enqueued_at=job.enqueued_at,
        due=due,
        timeout=int(job.timeout) if job.timeout is not None else None,
        retries_left=job.retries_left,
        meta=job.meta,
        depends_on=job._dependency_ids,
    )
    # Runs started: one per retry spent (offload gives a job one backoff interval per retry it
    # may take), plus the current or final run.
    spent = len(job.retry_intervals or []) - (job.retries_left or 0)
    attempts = max(spent, 0) + (1 if status in RAN else 0)
    ran = Ran(attempts, result, error, job.started_at, job.ended_at, job.worker_name, held)
    return render(stored, registered.name if registered else None, ran)


def new_job_view(job: NewJob, name: str, flow: FlowControl | None = None) -> JobView:
    """What `job_views` would show of a job the enqueue just wrote, without reading it back."""
    held = held_view(flow, job.status, job.kwargs, None)  # a capped job that got no slot yet
    return render(job, name, NOT_RUN if held is None else replace(NOT_RUN, held=held))


@dataclass(frozen=True)
class Ran:
    """What a job's hash and result add to what the enqueue wrote, once it has been taken or run."""

    attempts: int
    result: Any
    error: JobError | None
    started_at: datetime | None
    ended_at: datetime | None
    worker: str | None
    held: HeldView | None = None  # waiting on its rate limit or concurrency cap


NOT_RUN = Ran(0, None, None, None, None, None)


def render(job: NewJob, name: str | None, ran: Ran) -> JobView:
    """The one place a job's view is made: from what the enqueue wrote, and what came of it since."""
    progress = job.meta.get("progress")
    callback = job.meta.get("callback")
    later = job.meta.get("retry_after")
    request_id = job.meta.get(REQUEST_ID_META)
    return JobView(
        id=job.id,
        name=name,
        status=job.status,
        queue=job.queue,
        input=job.kwargs,
        result=ran.result,
        error=ran.error,
        progress=JobProgress.model_validate(progress) if isinstance(progress, dict) else None,
        created_at=job.created_at,
        enqueued_at=job.enqueued_at,
        scheduled_for=datetime.fromtimestamp(job.due, UTC) if job.due is not None else None,
        started_at=ran.started_at,
        ended_at=ran.ended_at,
        worker=ran.worker,
        timeout=job.timeout,
        attempts=ran.attempts,
        retries_left=job.retries_left,
        depends_on=job.depends_on,
        callback=CallbackView.model_validate(callback) if isinstance(callback, dict) else None,
        held=ran.held,
        retry_after=RetryAfterView.model_validate(later) if isinstance(later, dict) else None,
        request_id=request_id if isinstance(request_id, str) else None,
        url=f"/jobs/{job.id}",
        dashboard_url=f"{page}{quote(job.id, safe='')}" if (page := dashboard_job_page.get()) else None,
    )


def _error(job: Job, latest: Result | None) -> JobError:
    """The job function records its exception's type and message (service/catalog.py); failures
    outside it (a timeout, a killed work horse) leave only RQ's traceback, whose last line says."""
    recorded = _recorded_error(job)
    if recorded is not None:
        return recorded
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


def _recorded_error(job: Job) -> JobError | None:
    recorded = job.meta.get("error")
    if isinstance(recorded, dict) and {"type", "message"} <= recorded.keys():
        return JobError(type=str(recorded["type"]), message=str(recorded["message"]))
    return None


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
