"""The job catalogue: a decorator that turns typed functions into registered, enqueueable jobs."""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

from croniter import croniter
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from rq import Retry
from rq.job import Job as RQJob
from rq.job import get_current_job

from service.flow import RETRY_AFTER_LIMIT, FlowControl, RetryAfter, flow_control
from service.flow import retry_after as retry_after
from service.serializer import JSON
from service.store.enqueue import enqueue
from service.store.layout import QUEUES, WORKER_QUEUES, events_channel
from service.store.options import EnqueueOptions
from service.store.template import as_rq_job
from service.store.unique import Uniqueness, declare

if TYPE_CHECKING:
    from redis import Redis
    from rq.job import Job

P = ParamSpec("P")
R = TypeVar("R")

# The job an async job's task runs (report_progress), where RQ's thread-bound stack cannot tell.
_async_job: ContextVar[Job | None] = ContextVar("offload_async_job", default=None)

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class JobDefaults:
    """How a job runs unless an enqueue overrides it."""

    queue: str = "default"
    timeout: int = 180
    retries: int = 0
    retry_intervals: tuple[int, ...] = (10, 60, 300)
    result_ttl: int = 24 * 3600
    failure_ttl: int = 7 * 24 * 3600
    ttl: int | None = None  # seconds a job may wait queued before it starts; then it is canceled
    # Flow control (service/flow.py), checked against the input when the job is declared.
    rate_limit: str | None = None  # "100/minute": at most that many starts in any such window
    rate_key: str | None = None  # a parameter: one window per value
    concurrency: int | None = None  # at most this many queued or running at once
    concurrency_key: str | None = None  # a parameter: the cap is per value


@dataclass(frozen=True)
class Schedule:
    """When the clock process enqueues a job: a cron expression or an interval, with an input."""

    cron: str | None  # five fields in the clock's local time, as RQ's cron matches them
    every: int | None  # seconds
    input: dict[str, Any]  # checked against the job's input model when the job is declared


class RegisteredJob(Generic[P, R]):
    """A registered job: callable like the plain function, and enqueueable by name."""

    # Set by the decorator, once the input model exists to check them against.
    schedule: Schedule | None = None
    unique: Uniqueness | None = None

    def __init__(self, func: Callable[P, R], name: str, defaults: JobDefaults) -> None:
        self.func = func
        self.name = name
        self.defaults = defaults
        self.path = f"{func.__module__}.{func.__qualname__}"
        self.description = inspect.getdoc(func) or ""
        self.input_model = _input_model(func, name)
        self.flow: FlowControl | None = flow_control(
            name,
            self.input_model,
            defaults.rate_limit,
            defaults.rate_key,
            defaults.concurrency,
            defaults.concurrency_key,
        )
        hints = typing.get_type_hints(func, include_extras=True)
        self._result = TypeAdapter(hints["return"]) if "return" in hints else None
        self.is_async = inspect.iscoroutinefunction(func)
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job {self.name} ({self.path})>"

    def run(self, **kwargs: Any) -> Any:
        """Run inside a worker: validate the stored JSON input, call, return a JSON-able result.

        For an `async def` job this returns the coroutine that does it: RQ's `Job._execute` runs a
        coroutine a job's function returns on an event loop of its own (`asyncio.run`). At the
        job's timeout RQ's death penalty interrupts that loop and the coroutine is cancelled.
        """
        params = self.input_model.model_validate(kwargs)
        job = get_current_job()
        if job is not None and "error" in job.meta:  # a retry: the last attempt's error is stale
            del job.meta["error"]
            job.save_meta()
        arguments = {field: getattr(params, field) for field in type(params).model_fields}
        if self.is_async:
            return self._run_async(job, arguments)
        call: Callable[..., Any] = self.func
        try:
            result = call(**arguments)
        except RetryAfter as request:
            return _later(job, request)
        except Exception as exc:
            _record_error(job, exc)
            raise
        return self._dump(result)

    async def _run_async(self, job: Job | None, arguments: dict[str, Any]) -> Any:
        call = cast(Callable[..., Awaitable[Any]], self.func)  # is_async: it returns a coroutine
        # A concurrent worker runs this on a loop in another thread than RQ's, where RQ's
        # get_current_job() finds nothing: the task's own context carries the job instead.
        _async_job.set(job)
        try:
            result = await call(**arguments)
        except RetryAfter as request:
            return _later(job, request)
        except Exception as exc:
            _record_error(job, exc)
            raise
        return self._dump(result)

    def _dump(self, result: Any) -> Any:
        return result if self._result is None else self._result.dump_python(result, mode="json")

    def enqueue(self, connection: Redis, /, options: EnqueueOptions | None = None, **params: Any) -> Job:
        """Validate the input and enqueue this job, as the API would: the one enqueue path."""
        options = options or EnqueueOptions()
        enqueued = enqueue(connection, self, [self.input_model.model_validate(params)], options)
        if enqueued.duplicates:  # a unique job's duplicate: the job that holds its input
            return RQJob.fetch(enqueued.ids[0], connection=connection, serializer=JSON)
        return as_rq_job(connection, self, options, enqueued.jobs[0])


class Registry:
    """Registered jobs by public name and by the dotted path RQ stores."""

    def __init__(self) -> None:
        self._by_name: dict[str, RegisteredJob[..., Any]] = {}
        self._by_path: dict[str, RegisteredJob[..., Any]] = {}

    def job(
        self,
        name: str | None = None,
        *,
        cron: str | None = None,
        every: int | None = None,
        scheduled_input: dict[str, Any] | None = None,
        unique_by: tuple[str, ...] | None = None,
        unique_while: str | None = None,
        **defaults: Any,
    ) -> Callable[[Callable[P, R]], RegisteredJob[P, R]]:
        """Register the decorated function; keyword arguments are `JobDefaults` fields.

        `cron` (e.g. "*/5 * * * *") or `every` (seconds) also has the clock process enqueue it,
        with `scheduled_input` as its input. `unique_by` (input fields) makes an enqueue return the
        job that holds the same values while it is in `unique_while` ("queued", "running", the
        default, or "finished_for=N" seconds): service/store/unique.py.
        """
        settings = replace(JobDefaults(), **defaults)
        if settings.queue not in WORKER_QUEUES:
            raise ValueError(f"unknown queue {settings.queue!r}; queues are {', '.join(QUEUES)}")
        ttl = settings.ttl
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1):
            raise ValueError(f"ttl= is a whole number of seconds, at least 1; got {ttl!r}")

        def register(func: Callable[P, R]) -> RegisteredJob[P, R]:
            job_name = getattr(func, "__name__", repr(func)) if name is None else name
            _check_runnable(func, job_name)
            if not NAME_PATTERN.fullmatch(job_name):
                raise ValueError(f"job name {job_name!r} must match {NAME_PATTERN.pattern}")
            if job_name in self._by_name:
                raise ValueError(f"a job named {job_name!r} is already registered")
            registered = RegisteredJob(func, job_name, settings)
            registered.schedule = _schedule(registered, cron, every, scheduled_input)
            fields = registered.input_model.model_fields
            registered.unique = declare(job_name, unique_by, unique_while, fields, settings.result_ttl)
            self._by_name[job_name] = registered
            self._by_path[registered.path] = registered
            return registered

        return register

    def get(self, name: str) -> RegisteredJob[..., Any] | None:
        return self._by_name.get(name)

    def by_path(self, path: str | None) -> RegisteredJob[..., Any] | None:
        return self._by_path.get(path or "")

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __iter__(self) -> Iterator[RegisteredJob[..., Any]]:
        return iter(sorted(self._by_name.values(), key=lambda job: job.name))

    def __len__(self) -> int:
        return len(self._by_name)


def _later(job: Job | None, request: RetryAfter) -> Retry:
    """What a `retry_after` becomes: RQ's `Retry` return value, which RQ's worker reschedules without
    spending one of the job's retries (its own count, `number_of_retries`, bounds how often)."""
    count = (job.number_of_retries or 0) + 1 if job is not None else 1
    if job is not None:
        due = datetime.now(UTC) + timedelta(seconds=request.seconds)
        job.meta["retry_after"] = {"at": due.isoformat(), "reason": request.reason, "count": count}
        if count > RETRY_AFTER_LIMIT:  # RQ fails it now, with no exception to read the reason from
            message = f"asked to run later more than {RETRY_AFTER_LIMIT} times"
            job.meta["error"] = {"type": "RetryAfterLimitError", "message": message}
            job.save_meta()  # RQ's failure here saves no meta
    # RQ's worker saves the job (meta included) as it reschedules it.
    return Retry(max=RETRY_AFTER_LIMIT, interval=request.seconds)


def _record_error(job: Job | None, exc: Exception) -> None:
    """Keep the exception's type and message where the job's view shows them."""
    if job is not None:
        job.meta["error"] = {"type": type(exc).__name__, "message": str(exc)}
        job.save_meta()


def _check_runnable(func: Any, name: str) -> None:
    """Refuse at import what a worker could not run as a job: a job is a plain or `async def`
    function whose return value is its result."""
    if not inspect.isfunction(func):
        raise TypeError(f"job {name!r}: @job takes a function defined with def or async def, not {func!r}")
    if func.__name__ == "<lambda>":
        raise TypeError(f"job {name!r}: @job takes a named function, not a lambda")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"job {name!r}: {func.__qualname__} is a generator (it yields); a job returns its result: "
            "return a list, and use report_progress for what it does along the way"
        )


def _input_model(func: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of the function's parameters, so inputs are checked before enqueueing."""
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"job {name!r}: parameter {param.name!r} must be a named parameter")
        if param.name not in hints:
            raise TypeError(f"job {name!r}: parameter {param.name!r} needs a type annotation")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    model_name = "".join(part.capitalize() for part in name.split("_")) + "Input"
    return create_model(
        model_name,
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Input of the `{name}` job.",
        **fields,
    )


# Cron's shorthands that croniter also knows (@reboot means nothing to a clock process).
CRON_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


def _schedule(
    registered: RegisteredJob[..., Any],
    cron: str | None,
    every: int | None,
    scheduled_input: dict[str, Any] | None,
) -> Schedule | None:
    """Check a job's schedule when it is declared, so a bad one fails at import, not on the clock."""
    name = registered.name
    if cron is None and every is None:
        if scheduled_input is not None:
            raise ValueError(f"job {name!r}: scheduled_input needs a schedule, cron= or every=")
        return None
    if cron is not None and every is not None:
        raise ValueError(f"job {name!r}: give cron= or every=, not both")
    if cron is not None and not (
        (len(cron.split()) == 5 or cron.strip() in CRON_MACROS) and croniter.is_valid(cron, strict=True)
    ):
        raise ValueError(
            f"job {name!r}: cron={cron!r} is not a cron expression: five fields "
            "(minute hour day-of-month month day-of-week, e.g. '*/5 * * * *') or @hourly, @daily, ..."
        )
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"job {name!r}: every= is a whole number of seconds, at least 1; got {every!r}")
    try:
        params = registered.input_model.model_validate(scheduled_input or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"job {name!r}: its scheduled_input is not a valid input ({problems})") from None
    # JSON, as the clock will enqueue it; only what was given, so the defaults stay the job's.
    return Schedule(cron=cron, every=every, input=params.model_dump(mode="json", exclude_unset=True))


registry = Registry()
job = registry.job


def current_job() -> Job | None:
    """The RQ job the calling code runs in, sync or `async def`, on any worker kind; None outside one."""
    return get_current_job() or _async_job.get()


def report_progress(fraction: float, message: str = "") -> None:
    """Save the running job's progress (0 to 1) where the API shows it; a no-op outside a worker."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"progress must be between 0 and 1, got {fraction}")
    current = current_job()
    if current is None:
        return
    current.meta["progress"] = {"fraction": fraction, "message": message}
    current.save_meta()
    # Wakes the job's event streams, which then read the saved progress themselves.
    current.connection.publish(events_channel(current.id), "progress")


DEFAULT_JOBS_MODULE = "jobs"


def load_catalog(module: str = DEFAULT_JOBS_MODULE) -> Registry:
    """The catalogue: every job that importing `module` (the JOBS_MODULE setting) registers with `@job`."""
    importlib.import_module(module)
    return registry
