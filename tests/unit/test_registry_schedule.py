"""Periodic jobs as declared on the decorator: `cron=`, `every=`, `scheduled_input=`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import pytest
from pydantic import Field

from service.catalog import Registry, Schedule, load_catalog


@pytest.fixture
def registry() -> Registry:
    return Registry()


def test_a_job_without_a_schedule_has_none(registry: Registry) -> None:
    @registry.job()
    def plain() -> None: ...

    assert plain.schedule is None


@pytest.mark.parametrize(
    "expression", ["* * * * *", "*/5 * * * *", "0 9 * * mon-fri", "30 2 1 */3 *", "@hourly"]
)
def test_cron_expressions_are_accepted(registry: Registry, expression: str) -> None:
    @registry.job(cron=expression)
    def periodic() -> None: ...

    assert periodic.schedule == Schedule(cron=expression, every=None, input={})


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",  # four fields
        "0 0 * * * *",  # six: croniter would read seconds, which RQ's cron does not mean
        "61 * * * *",
        "0 0 30 2 *",  # 30 February never comes
        "every minute",
        "@reboot",  # means nothing to a clock process
    ],
)
def test_invalid_cron_expressions_are_refused_at_declaration(registry: Registry, expression: str) -> None:
    with pytest.raises(ValueError, match="is not a cron expression"):

        @registry.job(cron=expression)
        def periodic() -> None: ...

    assert registry.names() == []


def test_every_is_whole_seconds(registry: Registry) -> None:
    @registry.job(every=90)
    def periodic() -> None: ...

    assert periodic.schedule == Schedule(cron=None, every=90, input={})


@pytest.mark.parametrize("every", [0, -5, 1.5, True, "60"])
def test_invalid_intervals_are_refused(registry: Registry, every: Any) -> None:
    with pytest.raises(ValueError, match="every= is a whole number of seconds"):

        @registry.job(every=every)
        def periodic() -> None: ...


def test_cron_and_every_are_exclusive(registry: Registry) -> None:
    with pytest.raises(ValueError, match="give cron= or every=, not both"):

        @registry.job(cron="* * * * *", every=60)
        def periodic() -> None: ...


def test_scheduled_input_needs_a_schedule(registry: Registry) -> None:
    with pytest.raises(ValueError, match="scheduled_input needs a schedule"):

        @registry.job(scheduled_input={"n": 1})
        def plain(n: int) -> None: ...


def test_a_job_with_required_parameters_needs_a_valid_scheduled_input(registry: Registry) -> None:
    with pytest.raises(
        ValueError, match=r"job 'report': its scheduled_input is not a valid input.*customer_id"
    ):

        @registry.job(every=3600)
        def report(customer_id: int) -> None: ...

    with pytest.raises(ValueError, match="months: Input should be less than or equal to 24"):

        @registry.job(every=3600, scheduled_input={"customer_id": 1, "months": 99})
        def report2(customer_id: int, months: Annotated[int, Field(le=24)] = 12) -> None: ...

    with pytest.raises(ValueError, match="colour: Extra inputs are not permitted"):

        @registry.job(every=3600, scheduled_input={"customer_id": 1, "colour": "red"})
        def report3(customer_id: int) -> None: ...

    assert registry.names() == []


def test_the_scheduled_input_is_kept_as_json_with_only_what_was_given(registry: Registry) -> None:
    @registry.job(cron="0 3 * * *", scheduled_input={"day": dt.date(2026, 1, 2), "customer_id": "7"})
    def report(customer_id: int, day: dt.date, months: int = 12) -> None: ...

    assert report.schedule == Schedule(
        cron="0 3 * * *", every=None, input={"customer_id": 7, "day": "2026-01-02"}
    )


def test_the_example_heartbeat_runs_every_minute() -> None:
    heartbeat = load_catalog().get("heartbeat")
    assert heartbeat is not None
    assert heartbeat.schedule == Schedule(cron="* * * * *", every=None, input={})
    assert heartbeat.defaults.queue == "low"
    assert set(heartbeat()) == {"ran_at"}
    assert dt.datetime.fromisoformat(heartbeat()["ran_at"]).tzinfo is not None
