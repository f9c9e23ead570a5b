from __future__ import annotations

import datetime as dt
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from service.catalog import JobDefaults, Registry, report_progress
from service.store.layout import QUEUES
from service.store.options import EnqueueOptions


@pytest.fixture
def registry() -> Registry:
    return Registry()


def test_decorator_registers_under_the_function_name_with_defaults(registry: Registry) -> None:
    @registry.job()
    def resize(width: int, height: int = 10) -> int:
        """Resize something."""
        return width * height

    registered = registry.get("resize")
    assert registered is resize
    assert registered.defaults == JobDefaults()
    assert registered.description == "Resize something."
    assert registry.names() == ["resize"]
    assert (
        registry.by_path(
            f"{__name__}.test_decorator_registers_under_the_function_name_with_defaults.<locals>.resize"
        )
        is resize
    )


def test_a_registered_job_is_still_the_plain_function(registry: Registry) -> None:
    @registry.job(name="area", queue="high", timeout=5, retries=2, retry_intervals=(1,))
    def compute(width: int, height: int = 10) -> int:
        return width * height

    assert compute(3, height=2) == 6
    assert compute.name == "area"
    assert compute.defaults.queue == "high"
    assert compute.defaults.retries == 2


@pytest.mark.parametrize("bad_name", ["Upper", "9lives", "with-dash", "x" * 65, ""])
def test_job_names_are_checked(registry: Registry, bad_name: str) -> None:
    with pytest.raises(ValueError, match="must match"):

        @registry.job(name=bad_name)
        def f() -> None: ...


def test_duplicate_names_are_refused(registry: Registry) -> None:
    @registry.job(name="same")
    def first() -> None: ...

    with pytest.raises(ValueError, match="already registered"):

        @registry.job(name="same")
        def second() -> None: ...


def test_unknown_default_queue_is_refused(registry: Registry) -> None:
    with pytest.raises(ValueError, match="unknown queue 'urgent'"):
        registry.job(queue="urgent")


def test_unknown_default_is_refused(registry: Registry) -> None:
    with pytest.raises(TypeError):
        registry.job(priority=1)


def test_parameters_must_be_named_and_annotated(registry: Registry) -> None:
    with pytest.raises(TypeError, match="'args' must be a named parameter"):

        @registry.job()
        def star(*args: int) -> None: ...

    with pytest.raises(TypeError, match="'x' needs a type annotation"):

        @registry.job()
        def bare(x) -> None:  # type: ignore[no-untyped-def]
            ...


def test_input_model_follows_the_signature(registry: Registry) -> None:
    @registry.job()
    def send(to: str, times: Annotated[int, Field(ge=1, le=3)] = 1) -> None: ...

    model = send.input_model
    assert model.__name__ == "SendInput"
    assert model.model_validate({"to": "a"}).model_dump() == {"to": "a", "times": 1}
    schema = model.model_json_schema()
    assert schema["required"] == ["to"]
    assert schema["properties"]["times"]["maximum"] == 3
    assert schema["additionalProperties"] is False
    for bad in ({}, {"to": "a", "times": 4}, {"to": "a", "extra": 1}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)


class Summary(BaseModel):
    day: dt.date
    total: int


def test_run_validates_stored_json_and_returns_json(registry: Registry) -> None:
    @registry.job()
    def summarize(day: dt.date, values: list[int]) -> Summary:
        assert isinstance(day, dt.date)  # JSON's string comes back as the annotated type
        return Summary(day=day, total=sum(values))

    assert summarize.run(day="2026-11-26", values=[1, 2]) == {"day": "2026-11-26", "total": 3}
    with pytest.raises(ValidationError):
        summarize.run(day="not a date", values=[])


def test_enqueue_in_process_uses_the_same_validation_and_defaults(
    registry: Registry, connection: Redis
) -> None:
    @registry.job(queue="low", timeout=7, retries=2, retry_intervals=(3, 4), result_ttl=99)
    def add(a: int, b: int = 1) -> int:
        return a + b

    job = add.enqueue(connection, a=2)
    stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert stored.origin == "low"
    assert stored.kwargs == {"a": 2, "b": 1}
    assert stored.timeout == 7
    assert stored.result_ttl == 99
    assert stored.retries_left == 2
    assert stored.retry_intervals == [3, 4]
    assert stored.func_name == add.path

    # The n-th retry waits the n-th interval, whatever the number of retries asked for.
    assert add.enqueue(connection, EnqueueOptions(retries=1), a=1).retry_intervals == [3]
    assert add.enqueue(connection, EnqueueOptions(retries=4), a=1).retry_intervals == [3, 4, 4, 4]

    job = add.enqueue(connection, EnqueueOptions(queue="high", timeout=9, retries=0), a=1)
    stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert (stored.origin, stored.timeout, stored.retries_left) == ("high", 9, None)

    with pytest.raises(ValidationError):
        add.enqueue(connection, a="two")
    with pytest.raises(ValueError, match="unknown queue"):
        add.enqueue(connection, EnqueueOptions(queue="nope"), a=1)
    assert QUEUES == ("high", "default", "low")


def test_report_progress_outside_a_worker_is_a_no_op_but_checks_its_range() -> None:
    report_progress(0.5, "half")
    with pytest.raises(ValueError, match="between 0 and 1"):
        report_progress(1.5)
