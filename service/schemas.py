"""The shapes offload shows: a job (the API's answers and webhook bodies), pages, queues, the catalogue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error: a message, or (422) a list naming each invalid field."""

    detail: str | list[dict[str, Any]]


class JobError(BaseModel):
    type: str = Field(description="The exception's class name, e.g. ValueError or JobTimeoutException")
    message: str


class JobProgress(BaseModel):
    fraction: float = Field(ge=0, le=1)
    message: str = ""


class CallbackView(BaseModel):
    url: str
    status: str = Field(description="pending, retrying, delivered or failed")
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class HeldView(BaseModel):
    """Why a job that could run waits, and until when."""

    reason: str = Field(
        description="`rate_limit`: its rate limit's window is full (status `queued`); `concurrency`: its "
        "concurrency cap is reached (status `rate_limited`)"
    )
    limit: str = Field(description="The limit, as declared: `100/minute per account_id`, `5 at once`")
    key: str | None = Field(None, description="The key value the limit counts it under, if per key")
    eligible_at: datetime | None = Field(
        None,
        description="Rate limits: the earliest a slot of its window frees (estimated when it was held; "
        "jobs of the same key held before it go first). Concurrency caps: null, a slot frees when "
        "one of its key's jobs ends",
    )


class RetryAfterView(BaseModel):
    """The job's last request to run later (`retry_after`), which spent none of its retries."""

    at: datetime = Field(description="When it is due to run again")
    reason: str
    count: int = Field(description="How many times it has asked so far")


class JobView(BaseModel):
    """A job as the API shows it."""

    id: str
    name: str | None = Field(description="The registered job name; null for jobs not in the catalogue")
    status: str = Field(
        description="RQ's status: queued, scheduled, deferred, rate_limited (waits for a slot of its "
        "concurrency cap), started, finished, failed, stopped, canceled"
    )
    queue: str
    input: dict[str, Any]
    result: Any = Field(None, description="The return value, once finished")
    error: JobError | None = Field(
        None,
        description="Why it failed, once failed or stopped; why it was canceled, if offload canceled it "
        "(ExpiredError: not started within its ttl)",
    )
    progress: JobProgress | None = None
    created_at: datetime | None
    enqueued_at: datetime | None
    scheduled_for: datetime | None = Field(
        None, description="When a scheduled job (a delay, or a retry's backoff) is due"
    )
    started_at: datetime | None
    ended_at: datetime | None
    worker: str | None
    timeout: int | None = Field(description="Seconds a run may take before the worker kills it")
    attempts: int = Field(description="Runs started so far, retries included")
    retries_left: int | None
    depends_on: list[str] = Field(description="Jobs this one waits for")
    callback: CallbackView | None = Field(
        None, description="The webhook delivery, if a callback_url was given"
    )
    held: HeldView | None = Field(
        None, description="Held back by its rate limit or concurrency cap: why, and until when"
    )
    retry_after: RetryAfterView | None = Field(
        None, description="The job asked to run later (`retry_after`): when, why, how often"
    )
    request_id: str | None = Field(
        None,
        description="The X-Request-ID of the request that enqueued it, directly or through a job it "
        "started (a webhook delivery); the worker's log lines for the job carry it too. Null for "
        "periodic runs and jobs enqueued outside any request",
    )
    url: str
    dashboard_url: str | None = Field(
        None, description="The job's page in the dashboard; null when the dashboard is disabled"
    )


class JobPage(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end")


class QueueView(BaseModel):
    name: str
    counts: dict[str, int] = Field(description="Jobs per status")
    paused: bool = Field(
        False, description="Paused: it accepts jobs, and no worker takes any until it is resumed"
    )


class WorkerView(BaseModel):
    name: str
    state: str
    queues: list[str]
    current_job: str | None = Field(description="One of the jobs it runs (the first of current_jobs)")
    current_jobs: list[str] = Field(
        default_factory=list, description="Every job it runs now: several for a `--concurrency` worker"
    )
    successful_jobs: int
    failed_jobs: int
    hostname: str | None
    pid: int | None
    started_at: datetime | None
    last_heartbeat: datetime | None


class CatalogSchedule(BaseModel):
    """When the clock process enqueues a periodic job."""

    cron: str | None = Field(description="Cron expression, in the clock's local time; null for `every`")
    every: int | None = Field(description="Seconds between runs; null for `cron`")
    input: dict[str, Any] = Field(description="The input each scheduled run gets")
    last_run_at: datetime | None = Field(
        description="When a clock last enqueued it; null if none has (or Redis did not answer)"
    )
    next_run_at: datetime | None = Field(
        description="When the clock enqueues it next; null for an `every` job no clock has enqueued "
        "yet, which runs when a clock starts. A past time is overdue: the clock is not running"
    )


class CatalogEntry(BaseModel):
    name: str
    description: str
    queue: str
    timeout: int
    retries: int
    retry_intervals: list[int]
    result_ttl: int
    ttl: int | None = Field(
        None, description="Seconds a job may wait queued; not started by then, it is canceled unrun"
    )
    rate_limit: str | None = Field(
        None, description="At most this many starts in any window of that length (`100/minute`)"
    )
    rate_key: str | None = Field(None, description="The input field whose values each get the rate limit")
    concurrency: int | None = Field(None, description="At most this many queued or running at once")
    concurrency_key: str | None = Field(
        None, description="The input field whose values each get the concurrency cap"
    )
    unique_by: list[str] | None = Field(
        None,
        description="Unique jobs only: the input fields whose values key them; an enqueue with the "
        "values of a job still in `unique_while` returns that job (200, Offload-Duplicate-Of)",
    )
    unique_while: str | None = Field(
        None,
        description="How long a unique job holds its values: `queued` (until it starts), `running` "
        "(until it ends) or `finished_for=N` (and N seconds after it finished)",
    )
    input_schema: dict[str, Any]
    schedule: CatalogSchedule | None = Field(None, description="Periodic jobs only: the clock's schedule")


class Health(BaseModel):
    status: str
    redis: str | None = None
