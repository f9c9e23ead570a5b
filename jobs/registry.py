"""The job catalogue: a decorator that turns typed functions into registered, enqueueable jobs."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from rq import Queue, Retry
from rq.job import get_current_job
from rq.serializers import JSONSerializer

if TYPE_CHECKING:
    from redis import Redis
    from rq.job import Job

P = ParamSpec("P")
R = TypeVar("R")

# Priority order: a worker takes from the first queue that has work.
QUEUES: tuple[str, ...] = ("high", "default", "low")
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


@dataclass(frozen=True)
class EnqueueOptions:
    """Per-enqueue overrides of a job's defaults; None keeps the default."""

    queue: str | None = None
    timeout: int | None = None
    retries: int | None = None
    result_ttl: int | None = None


class RegisteredJob(Generic[P, R]):
    """A registered job: callable like the plain function, and enqueueable by name."""

    def __init__(self, func: Callable[P, R], name: str, defaults: JobDefaults) -> None:
        self.func = func
        self.name = name
        self.defaults = defaults
        self.path = f"{func.__module__}.{func.__qualname__}"
        self.description = inspect.getdoc(func) or ""
        self.input_model = _input_model(func, name)
        hints = typing.get_type_hints(func, include_extras=True)
        self._result = TypeAdapter(hints["return"]) if "return" in hints else None
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<job {self.name} ({self.path})>"

    def run(self, **kwargs: Any) -> Any:
        """Run inside a worker: validate the stored JSON input, call, return a JSON-able result."""
        params = self.input_model.model_validate(kwargs)
        job = get_current_job()
        if job is not None and "error" in job.meta:  # a retry: the last attempt's error is stale
            del job.meta["error"]
            job.save_meta()
        call: Callable[..., R] = self.func
        try:
            result = call(**{field: getattr(params, field) for field in type(params).model_fields})
        except Exception as exc:
            if job is not None:
                job.meta["error"] = {"type": type(exc).__name__, "message": str(exc)}
                job.save_meta()
            raise
        return result if self._result is None else self._result.dump_python(result, mode="json")

    def enqueue(self, connection: Redis, /, options: EnqueueOptions | None = None, **params: Any) -> Job:
        """Validate the input and enqueue this job: the one enqueue path, used by the API too."""
        return self.enqueue_input(connection, self.input_model.model_validate(params), options)

    def enqueue_input(
        self, connection: Redis, params: BaseModel, options: EnqueueOptions | None = None
    ) -> Job:
        """Enqueue an already validated input model."""
        options = options or EnqueueOptions()
        queue_name = options.queue or self.defaults.queue
        if queue_name not in QUEUES:
            raise ValueError(f"unknown queue {queue_name!r}; queues are {', '.join(QUEUES)}")
        retries = self.defaults.retries if options.retries is None else options.retries
        queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        # The function object, never a name from a request: RQ stores its dotted path, which
        # workers resolve only through this registry (see service/worker.py).
        return queue.enqueue_call(
            self.func,
            kwargs=params.model_dump(mode="json"),
            timeout=self.defaults.timeout if options.timeout is None else options.timeout,
            result_ttl=self.defaults.result_ttl if options.result_ttl is None else options.result_ttl,
            failure_ttl=self.defaults.failure_ttl,
            retry=Retry(max=retries, interval=self._intervals(retries)) if retries else None,
        )

    def _intervals(self, retries: int) -> list[int]:
        """One interval per retry: the n-th retry waits the n-th interval, the last repeating.

        RQ picks the interval of a list by retries *left*, so a list longer than the retries
        would start at its end (`retries=1` with (10, 60, 300) would wait 300 s).
        """
        intervals = self.defaults.retry_intervals or (0,)
        return [intervals[min(n, len(intervals) - 1)] for n in range(retries)]


class Registry:
    """Registered jobs by public name and by the dotted path RQ stores."""

    def __init__(self) -> None:
        self._by_name: dict[str, RegisteredJob[..., Any]] = {}
        self._by_path: dict[str, RegisteredJob[..., Any]] = {}

    def job(
        self, name: str | None = None, **defaults: Any
    ) -> Callable[[Callable[P, R]], RegisteredJob[P, R]]:
        """Register the decorated function; keyword arguments are `JobDefaults` fields."""
        settings = replace(JobDefaults(), **defaults)
        if settings.queue not in QUEUES:
            raise ValueError(f"unknown queue {settings.queue!r}; queues are {', '.join(QUEUES)}")

        def register(func: Callable[P, R]) -> RegisteredJob[P, R]:
            job_name = func.__name__ if name is None else name
            if not NAME_PATTERN.fullmatch(job_name):
                raise ValueError(f"job name {job_name!r} must match {NAME_PATTERN.pattern}")
            if job_name in self._by_name:
                raise ValueError(f"a job named {job_name!r} is already registered")
            registered = RegisteredJob(func, job_name, settings)
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


registry = Registry()
job = registry.job


def report_progress(fraction: float, message: str = "") -> None:
    """Save the running job's progress (0 to 1) where the API shows it; a no-op outside a worker."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"progress must be between 0 and 1, got {fraction}")
    current = get_current_job()
    if current is None:
        return
    current.meta["progress"] = {"fraction": fraction, "message": message}
    current.save_meta()
