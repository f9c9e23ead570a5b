"""GET /catalog's schedules: the clock's cron or interval, its last run and its next one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
from fastapi.testclient import TestClient
from redis import Redis

from service.catalog import Registry
from service.clock.clock import Clock
from service.settings import Settings
from service.web.app import create_app


def catalog(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/catalog")
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()}


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def scheduled_registry() -> Registry:
    registry = Registry()

    @registry.job(every=300, scheduled_input={"n": 2})
    def every_five_minutes(n: int) -> int:
        return n

    @registry.job(cron="0 * * * *")
    def hourly() -> None: ...

    @registry.job()
    def on_demand() -> None: ...

    return registry


def test_the_heartbeat_shows_its_cron_and_next_minute(client: TestClient) -> None:
    before = datetime.now(UTC)  # a minute may turn during the request: compared with its start
    entries = catalog(client)
    schedule = entries["heartbeat"]["schedule"]
    assert schedule["cron"] == "* * * * *"
    assert schedule["every"] is None
    assert schedule["input"] == {}
    assert schedule["last_run_at"] is None
    next_run = at(schedule["next_run_at"])
    assert timedelta(0) < next_run - before <= timedelta(minutes=1)
    assert next_run.astimezone().second == 0
    assert entries["word_count"]["schedule"] is None


def test_an_interval_job_has_no_next_run_until_a_clock_ran_it(
    make_client: Callable[..., TestClient], connection: Redis
) -> None:
    registry = scheduled_registry()
    client = make_client(registry)
    before = catalog(client)
    assert before["on_demand"]["schedule"] is None
    assert before["every_five_minutes"]["schedule"] == {
        "cron": None,
        "every": 300,
        "input": {"n": 2},
        "last_run_at": None,
        "next_run_at": None,  # due when a clock starts
    }
    hourly = before["hourly"]["schedule"]
    assert at(hourly["next_run_at"]).astimezone().minute == 0

    clock = Clock(connection, registry)
    assert clock.lease.acquire()
    clock.tick()

    after = catalog(client)["every_five_minutes"]["schedule"]
    ran = next(job for job in clock.scheduled if job.name == "every_five_minutes")
    # The catalogue and the clock agree to the microsecond: the same computation on the same record.
    assert at(after["last_run_at"]) == ran.latest_enqueue_time
    assert at(after["next_run_at"]) == ran.next_enqueue_time
    assert at(after["next_run_at"]) - at(after["last_run_at"]) == timedelta(seconds=300)


def test_without_redis_the_catalogue_still_answers(settings: Settings) -> None:
    server = fakeredis.FakeServer()
    server.connected = False  # every command fails as if Redis were down
    down = fakeredis.FakeRedis(server=server)
    with TestClient(create_app(settings, down, scheduled_registry())) as client:
        entries = catalog(client)
    assert entries["every_five_minutes"]["schedule"]["last_run_at"] is None
    assert entries["every_five_minutes"]["schedule"]["next_run_at"] is None
    assert entries["hourly"]["schedule"]["next_run_at"] is not None  # cron needs no history
