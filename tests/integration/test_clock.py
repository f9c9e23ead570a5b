"""The Procfile's clock on a real Redis: a cron job fires on schedule, once, and a worker runs it.

Two clocks run, as after a mistaken `heroku ps:scale clock=2`: one enqueues, the other stands by
and takes over when the first stops. The example `heartbeat` (cron `* * * * *`) is the periodic
job, so a test waits for the next minute: up to a minute.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import cron_scheduler_registry
from rq.cron import get_cron_job_history_key
from rq.job import Job
from rq.utils import as_text

from service.clock.clock import LEASE_SECONDS
from service.dev.harness import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    LoggedProcess,
    Stack,
    child_env,
    procfile_commands,
    running_stack,
    start_logged,
    wait_until,
)
from service.dev.redis_server import RedisServer
from service.store.layout import LEASE_KEY

pytestmark = pytest.mark.integration

# How late after its tick the clock may enqueue: it wakes for the tick, so well under a second;
# the margin is for a loaded test machine.
LATENESS = timedelta(seconds=5)


@dataclass
class Clocks:
    """The stack (web, worker, clock) plus a second clock, and a client of their Redis."""

    stack: Stack
    clocks: list[LoggedProcess]
    redis: redis.Redis

    def logs(self) -> str:
        return self.stack.logs() + "\n" + self.clocks[1].tail()

    def leader(self) -> str | None:
        holder = self.redis.get(LEASE_KEY)
        return as_text(holder) if holder is not None else None

    def last_tick(self) -> float:
        """`offload_clock_last_tick_timestamp_seconds`, as the web's /metrics shows it."""
        response = self.stack.client.get("/metrics")
        assert response.status_code == 200, f"{response.text}\n{self.logs()}"
        [family] = [
            family
            for family in text_string_to_metric_families(response.text)
            if family.name == "offload_clock_last_tick_timestamp_seconds"
        ]
        return float(family.samples[0].value)

    def process_of(self, clock_name: str) -> LoggedProcess:
        """A clock's process from its name (host:pid:suffix); the Procfile `exec`s, so the pid is
        the one the harness started."""
        pid = int(clock_name.split(":")[-2])
        return next(clock for clock in self.clocks if clock.popen.pid == pid)

    def enqueued(self, name: str, since: datetime, until: datetime) -> list[str]:
        """Ids of the jobs a clock enqueued for `name` in [since, until], from RQ's cron history."""
        key = get_cron_job_history_key(name)
        found = cast(list[bytes], self.redis.zrangebyscore(key, since.timestamp(), until.timestamp()))
        return [as_text(job_id) for job_id in found]

    def catalog_schedule(self, name: str) -> dict[str, Any]:
        response = self.stack.client.get("/catalog")
        assert response.status_code == 200, f"{response.text}\n{self.logs()}"
        entry = next(entry for entry in response.json() if entry["name"] == name)
        schedule: dict[str, Any] = entry["schedule"]
        return schedule


@pytest.fixture(scope="module")
def clocks(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clocks]:
    logs = tmp_path_factory.mktemp("clock-logs")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        with running_stack(redis_server.url, logs, names=("web", "worker", "clock")) as stack:
            second = start_logged(
                "clock2",
                procfile_commands()["clock"],
                logs / "clock2.log",
                child_env(REDIS_URL=redis_server.url),
            )
            try:
                yield Clocks(stack, [stack.processes["clock"], second], client)
            finally:
                second.stop()
    finally:
        client.close()


def at(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


@pytest.mark.timeout(180)  # a minute's wait for the tick, on top of the stack's start
def test_a_cron_job_fires_on_schedule_once_and_runs(clocks: Clocks) -> None:
    # One clock holds the lease and the other stands by.
    def settled() -> bool:
        logs = [clock.log_path.read_text() for clock in clocks.clocks]
        return (
            sum("it enqueues" in log for log in logs) == 1 and sum("standing by" in log for log in logs) == 1
        )

    assert wait_until(settled, STARTUP_TIMEOUT), clocks.logs()

    before = datetime.now(UTC)  # a minute may turn during the request: compared with its start
    schedule = clocks.catalog_schedule("heartbeat")
    assert schedule["cron"] == "* * * * *"
    tick = at(schedule["next_run_at"])
    assert before < tick <= datetime.now(UTC) + timedelta(minutes=1), schedule
    # The jobs come from the history the clock keeps, as RQ's cron does.
    window = (tick, tick + LATENESS)
    until = (window[1] - datetime.now(UTC)).total_seconds()
    assert wait_until(lambda: clocks.enqueued("heartbeat", *window), until, interval=0.2), (
        f"no heartbeat enqueued between {window[0]} and {window[1]}\n{clocks.logs()}"
    )
    enqueued = clocks.enqueued("heartbeat", *window)
    assert len(enqueued) == 1, f"{enqueued}\n{clocks.logs()}"
    job_id = enqueued[0]

    job = clocks.stack.wait_for_job(job_id, 20)
    assert job["status"] == "finished", f"{job}\n{clocks.logs()}"
    assert job["name"] == "heartbeat"
    assert job["queue"] == "low"
    assert tick <= at(job["enqueued_at"]) < tick + LATENESS, job
    assert at(job["result"]["ran_at"]) >= tick.replace(microsecond=0)
    # Stored with the JSON serializer (RQ's cron would have pickled it).
    raw = clocks.redis.hget(Job.key_for(job_id), "data")
    assert isinstance(raw, bytes)
    assert json.loads(zlib.decompress(raw))[0] == "jobs.examples.heartbeat"

    # Two clocks, one enqueue: once the window has passed, still just the one job for this tick,
    # logged by the clock that holds the lease.
    time.sleep(max(0.0, (window[1] - datetime.now(UTC)).total_seconds()))
    assert clocks.enqueued("heartbeat", *window) == [job_id], clocks.logs()
    logged = [clock for clock in clocks.clocks if f"enqueued heartbeat as job {job_id}" in clock.tail()]
    leader = clocks.leader()
    assert leader is not None
    assert logged == [clocks.process_of(leader)], clocks.logs()

    # The catalogue moves on with the clock.
    after = clocks.catalog_schedule("heartbeat")
    assert abs(at(after["last_run_at"]) - at(job["enqueued_at"])) < timedelta(milliseconds=1), after
    assert at(after["next_run_at"]) == tick + timedelta(minutes=1), after


def test_a_standby_clock_takes_over_when_the_leader_stops(clocks: Clocks) -> None:
    leader_name = wait_until(clocks.leader, STARTUP_TIMEOUT)
    assert leader_name, clocks.logs()
    leader = clocks.process_of(leader_name)
    standby = next(clock for clock in clocks.clocks if clock is not leader)
    assert cron_scheduler_registry.get_keys(clocks.redis) == [leader_name]

    started, stopped_at = time.monotonic(), time.time()
    leader.stop()  # SIGTERM; SIGKILL only after STOP_TIMEOUT
    assert time.monotonic() - started < STOP_TIMEOUT / 2, leader.tail()
    assert f"clock {leader_name} stopped" in leader.tail(), leader.tail()

    # Released on the way out: the standby takes it at its next look, within a third of a lease.
    new_leader = wait_until(lambda: (name := clocks.leader()) != leader_name and name, LEASE_SECONDS)
    assert new_leader, clocks.logs()
    assert clocks.process_of(new_leader) is standby
    assert wait_until(lambda: cron_scheduler_registry.get_keys(clocks.redis) == [new_leader], 5), (
        cron_scheduler_registry.get_keys(clocks.redis)
    )
    # /metrics shows the new leader's rounds (its first comes just after its registration above),
    # then its last tick is never more than a round old. The tick is read before the time it is
    # compared with: a round during the request would make the age negative.
    assert wait_until(lambda: clocks.last_tick() > stopped_at, LEASE_SECONDS), clocks.logs()
    for _ in range(3):
        tick = clocks.last_tick()
        age = time.time() - tick
        assert 0 <= age <= LEASE_SECONDS / 3 + 1, f"last tick {age:.1f} s ago\n{clocks.logs()}"
        time.sleep(1)
