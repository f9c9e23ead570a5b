"""RQ's hash of a job, as its enqueue saves it, made once per (job, options) by RQ itself.

The writer (service/store/write.py) fills in what differs from one job to the next; the fields
around them are sent packed once (service/connection.py's `Packed`). In-process producers get
RQ's `Job` of what was written from the same source (`as_rq_job`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Callback, Queue, RateLimit, Retry
from rq.job import Dependency, Job, JobStatus
from rq.utils import now

from service.connection import Packed
from service.flow import RATE_SLACK_MS, key_value
from service.serializer import JSON
from service.store.layout import (
    CALLBACK_HOOKS,
    COUNTERS_KEY,
    RATE_FIELD,
    concurrency_key,
    deferred_key,
    index_key,
    queue_key,
    queues_set_key,
    rate_bucket,
    scheduled_key,
    wake_key,
)
from service.store.options import EnqueueOptions, retry_intervals

if TYPE_CHECKING:
    from service.catalog import RegisteredJob
    from service.store.write import NewJob

# An arbitrary moment: templates only need to know whether a job is scheduled, not when.
_SOME_TIME = datetime(2000, 1, 1, tzinfo=UTC)


class Template:
    """RQ's hash of a job, as its enqueue saves it, less what differs from one job to the next."""

    def __init__(self, registered: RegisteredJob[..., Any], options: EnqueueOptions) -> None:
        # RQ's objects want a client; building them sends nothing.
        queue = Queue(options.queue or registered.defaults.queue, connection=Redis(), serializer=JSON)
        job = _create(queue, registered, options, "template", {})
        status = job.get_status(refresh=False)
        assert status is not None
        assert job.func_name is not None
        assert job.ttl is None  # RQ's cleanup(ttl=None) adds no EXPIRE; neither does the script
        flow = registered.flow
        # A capped job waits for a slot of its RateLimit (rq/rate_limit.py); the script promotes it.
        self.capped = (job.rate_limit_concurrency or 0) if status == JobStatus.QUEUED else 0
        if self.capped:
            # What Queue._enqueue_rate_limited_job sets before its save; `enqueued_at` comes with
            # the promotion.
            job.origin = queue.name
            job._status = status = JobStatus.RATE_LIMITED
            if options.at_front:
                job.enqueue_at_front = True
        elif status == JobStatus.QUEUED:
            # What Queue._prepare_for_queue sets, short of asking Redis its version.
            job.origin = queue.name
            job.enqueued_at = now()
        # Field, value, field, value...: status first, as `set_status` then `save` leave the hash;
        # meta last, where a request that adds to it (its request id, its trace context) writes its own.
        stored = job.to_dict()
        meta = stored.pop("meta", None)
        self.fields: list[Any] = ["status", status.value]
        for field, value in stored.items():
            self.fields += [field, value.value if isinstance(value, JobStatus) else value]
        if flow is not None and flow.rate is not None:  # offload's own: read by the take script
            self.fields += [RATE_FIELD, ""]
        bare_width = len(self.fields)
        if meta is not None:
            self.fields += ["meta", meta]
        value_at = {field: 2 * n + 1 for n, field in enumerate(self.fields[::2])}
        self.created_at = value_at["created_at"]  # where each job's own values go
        self.data = value_at["data"]
        self.description = value_at["description"]
        self.enqueued_at = value_at.get("enqueued_at")
        self.rate_limit_key = value_at.get("rate_limit_key")  # RQ's cap, per key value
        self.rate = value_at.get(RATE_FIELD)
        self.func_name = job.func_name
        self.scheduled = status == JobStatus.SCHEDULED
        if self.scheduled:
            self.how, target = "ZADD", scheduled_key(queue.name)
        else:
            self.how, target = ("LPUSH" if options.at_front else "RPUSH"), queue_key(queue.name)
        indexes = [index_key(), index_key(name=registered.name), index_key(queue=queue.name)]
        self.keys = Packed(
            [queues_set_key(), queue.key, target, *indexes, COUNTERS_KEY, wake_key(queue.name)]
        )
        self.deferred = deferred_key(queue.name)
        # Each job's own values go in these slots; what lies between them is sent as packed.
        self.width = len(self.fields)
        own = (self.created_at, self.data, self.description, self.enqueued_at, self.rate_limit_key, self.rate)
        self.slots = sorted(slot for slot in own if slot is not None)
        self.runs = _runs(self.fields, self.slots)
        # The same, less the meta: a request's own meta follows them (write.py).
        self.bare_width = bare_width
        self.bare_runs = _runs(self.fields[:bare_width], self.slots)
        self.counter = f"{registered.name}:enqueued"
        self.queue = queue.name
        self.status = status.value
        self.timeout = int(job.timeout) if job.timeout is not None else None
        self.retries_left = job.retries_left
        self.meta = job.meta


def _runs(fields: list[Any], slots: list[int]) -> list[Packed]:
    """What lies between the slots of each job's own values, packed."""
    bounds = [-1, *slots, len(fields)]
    return [Packed(fields[start + 1 : end]) for start, end in itertools.pairwise(bounds)]


def as_rq_job(
    connection: Redis, registered: RegisteredJob[..., Any], options: EnqueueOptions, new: NewJob
) -> Job:
    """RQ's `Job` of a job just written, for in-process producers, without reading it back."""
    queue = Queue(new.queue, connection=connection, serializer=JSON)
    job = _create(queue, registered, options, new.id, new.kwargs, JobStatus(new.status))
    job.created_at = new.created_at or job.created_at
    job.enqueued_at = new.enqueued_at
    job.meta = dict(new.meta)  # with what its request added
    return job


def _create(
    queue: Queue,
    registered: RegisteredJob[..., Any],
    options: EnqueueOptions,
    job_id: str,
    kwargs: dict[str, Any],
    status: JobStatus | None = None,
) -> Job:
    """RQ's own job for these options: the template's source, or a written job's object."""
    defaults = registered.defaults
    retries = defaults.retries if options.retries is None else options.retries
    depends_on = (
        Dependency(
            jobs=list(options.depends_on),
            allow_failure=options.allow_failure,
            enqueue_at_front=options.at_front,  # where the job goes once its dependencies end
        )
        if options.depends_on
        else None
    )
    # The function object, never a name from a request: RQ stores its dotted path, which
    # workers resolve only through the registry (service/worker/job.py).
    job = queue.create_job(
        registered.func,
        kwargs=kwargs,
        timeout=defaults.timeout if options.timeout is None else options.timeout,
        result_ttl=defaults.result_ttl if options.result_ttl is None else options.result_ttl,
        failure_ttl=defaults.failure_ttl,
        retry=Retry(max=retries, interval=retry_intervals(defaults.retry_intervals, retries))
        if retries
        else None,
        depends_on=depends_on,
        job_id=job_id,
        status=status or (JobStatus.SCHEDULED if options.at is not None else JobStatus.QUEUED),
        meta=_meta(options.callback_url, defaults.ttl if options.ttl is None else options.ttl),
        rate_limit=_cap(registered, kwargs),
        **_callbacks(options.callback_url),
    )
    return job


def _cap(registered: RegisteredJob[..., Any], kwargs: dict[str, Any]) -> RateLimit | None:
    """RQ's RateLimit of a capped job (its key from this input); a template's names the job alone."""
    flow = registered.flow
    if flow is None or flow.concurrency is None:
        return None
    return RateLimit(cap_key(registered, kwargs), flow.concurrency)


def cap_key(registered: RegisteredJob[..., Any], kwargs: dict[str, Any]) -> str:
    """The RateLimit key of one input of a capped job: its name, and its key value if it has one."""
    flow = registered.flow
    assert flow is not None
    field = flow.concurrency_key
    return concurrency_key(registered.name, key_value(kwargs, field) if field and kwargs else None)


def rate_spec(registered: RegisteredJob[..., Any], kwargs: dict[str, Any]) -> str:
    """The RATE_FIELD of one input of a rate-limited job: "<limit> <window ms> <bucket>"."""
    flow = registered.flow
    assert flow is not None
    assert flow.rate is not None
    field = flow.rate_key
    bucket = rate_bucket(registered.name, key_value(kwargs, field) if field else None)
    return f"{flow.rate.limit} {flow.rate.per * 1000 + RATE_SLACK_MS} {bucket}"


def _callbacks(url: str | None) -> dict[str, Any]:
    if url is None:
        return {}
    return {option: Callback(path) for option, path in CALLBACK_HOOKS.items()}


def _meta(url: str | None, ttl: int | None) -> dict[str, Any] | None:
    """The job's meta as enqueued: its webhook's delivery state, and its ttl (service/store/expiry.py)."""
    meta: dict[str, Any] = {}
    if url is not None:
        meta["callback"] = {"url": url, "status": "pending", "attempts": 0}
    if ttl is not None:
        meta["ttl"] = ttl
    return meta or None


def template_for(registered: RegisteredJob[..., Any], options: EnqueueOptions) -> Template:
    # A template depends on whether a job is scheduled, not on when.
    shape = options if options.at is None else replace(options, at=_SOME_TIME, delay=None)
    if options.depends_on:  # ids differ from request to request: not worth a cache entry
        return Template(registered, shape)
    return _cached_template(registered, shape)


@functools.lru_cache(maxsize=512)
def _cached_template(registered: RegisteredJob[..., Any], options: EnqueueOptions) -> Template:
    return Template(registered, options)
