"""offload's API as typed Python, generated from its OpenAPI schema.

Do not edit: `python -m offload_client.generate` writes it (`make client`, from the app's
/openapi.json); tests/unit/test_client_generate.py fails when the schema and this file differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, Required, TypedDict, TypeVar, Unpack

from pydantic import BaseModel


class CatalogSchedule(BaseModel):
    """When the clock process enqueues a periodic job."""

    cron: str | None
    """Cron expression, in the clock's local time; null for `every`"""
    every: int | None
    """Seconds between runs; null for `cron`"""
    input: dict[str, Any]
    """The input each scheduled run gets"""
    last_run_at: datetime | None
    """When a clock last enqueued it; null if none has (or Redis did not answer)"""
    next_run_at: datetime | None
    """When the clock enqueues it next; null for an `every` job no clock has enqueued yet, which runs when a
    clock starts. A past time is overdue: the clock is not running
    """


class CatalogEntry(BaseModel):
    """CatalogEntry, as the API shows it."""

    name: str
    description: str
    queue: str
    timeout: int
    retries: int
    retry_intervals: list[int]
    result_ttl: int
    ttl: int | None = None
    """Seconds a job may wait queued; not started by then, it is canceled unrun"""
    rate_limit: str | None = None
    """At most this many starts in any window of that length (`100/minute`)"""
    rate_key: str | None = None
    """The input field whose values each get the rate limit"""
    concurrency: int | None = None
    """At most this many queued or running at once"""
    concurrency_key: str | None = None
    """The input field whose values each get the concurrency cap"""
    unique_by: list[str] | None = None
    """Unique jobs only: the input fields whose values key them; an enqueue with the values of a job still in
    `unique_while` returns that job (200, Offload-Duplicate-Of)
    """
    unique_while: str | None = None
    """How long a unique job holds its values: `queued` (until it starts), `running` (until it ends) or
    `finished_for=N` (and N seconds after it finished)
    """
    input_schema: dict[str, Any]
    schedule: CatalogSchedule | None = None
    """Periodic jobs only: the clock's schedule"""


class Health(BaseModel):
    """Health, as the API shows it."""

    status: str
    redis: str | None = None


class CallbackView(BaseModel):
    """CallbackView, as the API shows it."""

    url: str
    status: str
    """pending, retrying, delivered or failed"""
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


class HeldView(BaseModel):
    """Why a job that could run waits, and until when."""

    reason: str
    """`rate_limit`: its rate limit's window is full (status `queued`); `concurrency`: its concurrency cap is
    reached (status `rate_limited`)
    """
    limit: str
    """The limit, as declared: `100/minute per account_id`, `5 at once`"""
    key: str | None = None
    """The key value the limit counts it under, if per key"""
    eligible_at: datetime | None = None
    """Rate limits: the earliest a slot of its window frees (estimated when it was held; jobs of the same key
    held before it go first). Concurrency caps: null, a slot frees when one of its key's jobs ends
    """


class JobError(BaseModel):
    """JobError, as the API shows it."""

    type: str
    """The exception's class name, e.g. ValueError or JobTimeoutException"""
    message: str


class JobProgress(BaseModel):
    """JobProgress, as the API shows it."""

    fraction: float
    message: str = ""


class RetryAfterView(BaseModel):
    """The job's last request to run later (`retry_after`), which spent none of its retries."""

    at: datetime
    """When it is due to run again"""
    reason: str
    count: int
    """How many times it has asked so far"""


class JobView(BaseModel):
    """A job as the API shows it."""

    id: str
    name: str | None
    """The registered job name; null for jobs not in the catalogue"""
    status: str
    """RQ's status: queued, scheduled, deferred, rate_limited (waits for a slot of its concurrency cap),
    started, finished, failed, stopped, canceled
    """
    queue: str
    input: dict[str, Any]
    result: Any = None
    """The return value, once finished"""
    error: JobError | None = None
    """Why it failed, once failed or stopped; why it was canceled, if offload canceled it (ExpiredError: not
    started within its ttl)
    """
    progress: JobProgress | None = None
    created_at: datetime | None
    enqueued_at: datetime | None
    scheduled_for: datetime | None = None
    """When a scheduled job (a delay, or a retry's backoff) is due"""
    started_at: datetime | None
    ended_at: datetime | None
    worker: str | None
    timeout: int | None
    """Seconds a run may take before the worker kills it"""
    attempts: int
    """Runs started so far, retries included"""
    retries_left: int | None
    depends_on: list[str]
    """Jobs this one waits for"""
    callback: CallbackView | None = None
    """The webhook delivery, if a callback_url was given"""
    held: HeldView | None = None
    """Held back by its rate limit or concurrency cap: why, and until when"""
    retry_after: RetryAfterView | None = None
    """The job asked to run later (`retry_after`): when, why, how often"""
    request_id: str | None = None
    """The X-Request-ID of the request that enqueued it, directly or through a job it started (a webhook
    delivery); the worker's log lines for the job carry it too. Null for periodic runs and jobs enqueued
    outside any request
    """
    url: str
    dashboard_url: str | None = None
    """The job's page in the dashboard; null when the dashboard is disabled"""


class JobPage(BaseModel):
    """JobPage, as the API shows it."""

    jobs: list[JobView]
    next_cursor: str | None
    """Pass as `cursor` for the next page; null at the end"""


class QueueView(BaseModel):
    """QueueView, as the API shows it."""

    name: str
    counts: dict[str, int]
    """Jobs per status"""
    paused: bool = False
    """Paused: it accepts jobs, and no worker takes any until it is resumed"""


class WorkerView(BaseModel):
    """WorkerView, as the API shows it."""

    name: str
    state: str
    queues: list[str]
    current_job: str | None
    """One of the jobs it runs (the first of current_jobs)"""
    current_jobs: list[str] = []
    """Every job it runs now: several for a `--concurrency` worker"""
    successful_jobs: int
    failed_jobs: int
    hostname: str | None
    pid: int | None
    started_at: datetime | None
    last_heartbeat: datetime | None


Queue = Literal["high", "default", "low"]


Status = Literal[
    "queued",
    "scheduled",
    "deferred",
    "rate_limited",
    "started",
    "finished",
    "failed",
    "stopped",
    "canceled",
]


class EnqueueOptions(TypedDict, total=False):
    """The options of POST /jobs/{name}; none is required."""

    wait: float
    """Seconds to wait for the job to end before answering"""
    queue: Queue
    """Queue to use instead of the job's"""
    timeout: int
    """Seconds a run may take"""
    retries: int
    """Retries after a failed run, with the job's backoff"""
    result_ttl: int
    """Seconds the result is kept"""
    delay: float
    """Run in this many seconds"""
    at: datetime
    """Run at this time (RFC 3339, with a timezone)"""
    depends_on: Sequence[str]
    """Ids of jobs to wait for (repeat the parameter for several)"""
    allow_failure: bool
    """Run even if a dependency failed (default: wait for success)"""
    at_front: bool
    """Put the job at the front of its queue"""
    callback_url: str
    """POST the job's final view here, signed, when it ends (http or https)"""
    ttl: int
    """Seconds the job may wait queued; not started by then, it is canceled unrun"""


class BatchOptions(TypedDict, total=False):
    """The options of POST /jobs/{name}/batch; none is required."""

    queue: Queue
    """Queue to use instead of the job's"""
    timeout: int
    """Seconds a run may take"""
    retries: int
    """Retries after a failed run, with the job's backoff"""
    result_ttl: int
    """Seconds the result is kept"""
    delay: float
    """Run in this many seconds"""
    at: datetime
    """Run at this time (RFC 3339, with a timezone)"""
    depends_on: Sequence[str]
    """Ids of jobs to wait for (repeat the parameter for several)"""
    allow_failure: bool
    """Run even if a dependency failed (default: wait for success)"""
    at_front: bool
    """Put the job at the front of its queue"""
    callback_url: str
    """POST the job's final view here, signed, when it ends (http or https)"""
    ttl: int
    """Seconds the job may wait queued; not started by then, it is canceled unrun"""


class AlwaysFailsInput(TypedDict, total=False):
    """The input of `always_fails`."""

    message: str
    """Default: "this job fails on purpose". Bounds: maxLength 1000."""


class CountPrimesInput(TypedDict, total=False):
    """The input of `count_primes`."""

    limit: int
    """Default: 1000000. Bounds: minimum 2, maximum 50000000."""


class HeartbeatInput(TypedDict, total=False):
    """The input of `heartbeat`."""


class ProcessItemsInput(TypedDict, total=False):
    """The input of `process_items`."""

    items: int
    """Default: 10. Bounds: minimum 1, maximum 10000."""
    delay: float
    """Default: 0.2. Bounds: minimum 0, maximum 10."""


class SyncAccountInput(TypedDict, total=False):
    """The input of `sync_account`."""

    account_id: Required[int]
    """Bounds: minimum 1."""
    seconds: float
    """Default: 1. Bounds: minimum 0, maximum 60."""


class VeryLongTaskInput(TypedDict, total=False):
    """The input of `very_long_task`."""

    seconds: float
    """Default: 5. Bounds: minimum 0, maximum 3600."""


class WaitForAllInput(TypedDict, total=False):
    """The input of `wait_for_all`."""

    waits: Sequence[float]
    """Default: [1.0, 2.0, 0.5]. Bounds: minItems 1, maxItems 100."""


class WordCountInput(TypedDict, total=False):
    """The input of `word_count`."""

    text: Required[str]
    """Bounds: maxLength 1000000."""
    top: int
    """Default: 10. Bounds: minimum 1, maximum 100."""


One = TypeVar("One")
Many = TypeVar("Many")
# How a client enqueues: (job name, input or inputs, options, Idempotency-Key) -> its answer.
EnqueueOne = Callable[[str, Mapping[str, Any], EnqueueOptions | None, str | None], One]
EnqueueMany = Callable[[str, Sequence[Mapping[str, Any]], BatchOptions | None, str | None], Many]


class Jobs(Generic[One, Many]):
    """One method per job: `client.jobs.word_count(text="...")` (with AsyncClient, awaited)."""

    def __init__(self, enqueue: EnqueueOne[One], enqueue_batch: EnqueueMany[Many]) -> None:
        self._enqueue = enqueue
        self._enqueue_batch = enqueue_batch

    def always_fails(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[AlwaysFailsInput],
    ) -> One:
        """Fail on purpose, after its retries: shows how errors and retries look over HTTP."""
        return self._enqueue("always_fails", input, options, idempotency_key)

    def always_fails_batch(
        self,
        inputs: Sequence[AlwaysFailsInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `always_fails`: one job per input, all enqueued or none."""
        return self._enqueue_batch("always_fails", inputs, options, idempotency_key)

    def count_primes(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[CountPrimesInput],
    ) -> One:
        """CPU-bound: count the primes below `limit` with a sieve of Eratosthenes."""
        return self._enqueue("count_primes", input, options, idempotency_key)

    def count_primes_batch(
        self,
        inputs: Sequence[CountPrimesInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `count_primes`: one job per input, all enqueued or none."""
        return self._enqueue_batch("count_primes", inputs, options, idempotency_key)

    def heartbeat(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[HeartbeatInput],
    ) -> One:
        """Periodic (every minute, from the clock process): shows the clock and the workers at work."""
        return self._enqueue("heartbeat", input, options, idempotency_key)

    def heartbeat_batch(
        self,
        inputs: Sequence[HeartbeatInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `heartbeat`: one job per input, all enqueued or none."""
        return self._enqueue_batch("heartbeat", inputs, options, idempotency_key)

    def process_items(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[ProcessItemsInput],
    ) -> One:
        """Work through `items` items, reporting progress after each one."""
        return self._enqueue("process_items", input, options, idempotency_key)

    def process_items_batch(
        self,
        inputs: Sequence[ProcessItemsInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `process_items`: one job per input, all enqueued or none."""
        return self._enqueue_batch("process_items", inputs, options, idempotency_key)

    def sync_account(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[SyncAccountInput],
    ) -> One:
        """Unique per account_id while queued or running: sync one account (a sleep stands in for it)."""
        return self._enqueue("sync_account", input, options, idempotency_key)

    def sync_account_batch(
        self,
        inputs: Sequence[SyncAccountInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `sync_account`: one job per input, all enqueued or none."""
        return self._enqueue_batch("sync_account", inputs, options, idempotency_key)

    def very_long_task(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[VeryLongTaskInput],
    ) -> One:
        """Sleep for `seconds`, reporting progress each second: the seed's slow endpoint."""
        return self._enqueue("very_long_task", input, options, idempotency_key)

    def very_long_task_batch(
        self,
        inputs: Sequence[VeryLongTaskInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `very_long_task`: one job per input, all enqueued or none."""
        return self._enqueue_batch("very_long_task", inputs, options, idempotency_key)

    def wait_for_all(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[WaitForAllInput],
    ) -> One:
        """I/O-bound, `async def`: wait on several things at once (sleeps standing in for HTTP calls),
        reporting each as it ends; it takes as long as the longest wait, not their sum.
        """
        return self._enqueue("wait_for_all", input, options, idempotency_key)

    def wait_for_all_batch(
        self,
        inputs: Sequence[WaitForAllInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `wait_for_all`: one job per input, all enqueued or none."""
        return self._enqueue_batch("wait_for_all", inputs, options, idempotency_key)

    def word_count(
        self,
        *,
        options: EnqueueOptions | None = None,
        idempotency_key: str | None = None,
        **input: Unpack[WordCountInput],
    ) -> One:
        """Text: count words (case-insensitive) and return the most common ones."""
        return self._enqueue("word_count", input, options, idempotency_key)

    def word_count_batch(
        self,
        inputs: Sequence[WordCountInput],
        *,
        options: BatchOptions | None = None,
        idempotency_key: str | None = None,
    ) -> Many:
        """A batch of `word_count`: one job per input, all enqueued or none."""
        return self._enqueue_batch("word_count", inputs, options, idempotency_key)


JOB_NAMES = (
    "always_fails",
    "count_primes",
    "heartbeat",
    "process_items",
    "sync_account",
    "very_long_task",
    "wait_for_all",
    "word_count",
)
