"""The clock process on fakeredis: JSON enqueues through the registry, the lease, warm stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import cron_job_registry, cron_scheduler_registry
from rq.cron import CronScheduler, get_cron_job_ids
from rq.job import Job
from rq.serializers import JSONSerializer

from service.catalog import RegisteredJob, Registry
from service.clock.clock import Clock, ClockStopped, Lease, main
from service.schedules import ScheduledJob, last_enqueued
from service.store.layout import CLOCK_TICK_KEY, LEASE_KEY

RunJobs = Callable[..., None]


@pytest.fixture
def registry() -> Registry:
    """A catalogue with an interval job and a cron job, both cheap."""
    catalogue = Registry()

    @catalogue.job(queue="high", every=60, scheduled_input={"n": 3}, result_ttl=600)
    def squares(n: int, offset: int = 0) -> list[int]:
        return [i * i + offset for i in range(n)]

    @catalogue.job(cron="*/5 * * * *")
    def nightly() -> str:
        return "done"

    @catalogue.job()
    def on_demand() -> None: ...

    return catalogue


def scheduled(clock: Clock, name: str) -> ScheduledJob:
    return next(job for job in clock.scheduled if job.name == name)


def history(connection: Redis, name: str) -> list[Job]:
    """The jobs the clock enqueued for `name`, newest first, read with the JSON serializer."""
    ids = get_cron_job_ids(name, connection)
    return [Job.fetch(job_id, connection=connection, serializer=JSONSerializer) for job_id in ids]


def test_only_scheduled_jobs_are_on_the_clock(connection: Redis, registry: Registry) -> None:
    clock = Clock(connection, registry)
    assert sorted(job.name for job in clock.scheduled) == ["nightly", "squares"]
    assert clock.get_jobs() == clock.scheduled  # RQ's own view holds the same jobs


def test_due_jobs_are_enqueued_as_json_and_run_on_the_workers(
    connection: Redis, registry: Registry, run_jobs: RunJobs
) -> None:
    clock = Clock(connection, registry)
    assert clock.lease.acquire()
    assert clock.tick() is not None  # an interval job that never ran is due at once

    [job] = history(connection, "squares")
    assert job.origin == "high"
    assert job.kwargs == {"n": 3, "offset": 0}  # validated like any input: defaults filled in
    assert job.result_ttl == 600
    # Stored as JSON: RQ's default would have pickled it, which offload's workers refuse.
    raw = connection.hget(Job.key_for(job.id), "data")
    assert isinstance(raw, bytes)
    func_name, _instance, _args, kwargs = json.loads(zlib.decompress(raw))
    assert func_name.endswith("squares")
    assert kwargs == {"n": 3, "offset": 0}
    assert history(connection, "nightly") == []  # its first tick is still ahead

    run_jobs(registry)
    finished = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert finished.get_status() == "finished"
    assert finished.return_value() == [0, 1, 4]


def test_rqs_bookkeeping_is_kept(connection: Redis, registry: Registry) -> None:
    clock = Clock(connection, registry)
    assert clock.lease.acquire()
    clock.tick()
    [job] = history(connection, "squares")
    assert job.enqueued_at is not None
    assert cron_job_registry.get_names(connection) == ["squares"]
    assert last_enqueued(connection, ["squares", "nightly"]) == {
        "squares": job.enqueued_at.replace(tzinfo=UTC),
        "nightly": None,
    }
    # RQ's record of this clock (as `rq cron` tools read it), with each job's last and next run.
    [seen] = CronScheduler.all(connection)
    assert seen.name == clock.name
    squares = next(cron_job for cron_job in seen.get_jobs() if cron_job.name == "squares")
    assert squares.interval == 60
    assert squares.latest_enqueue_time is not None


def test_an_interval_job_waits_its_interval(connection: Redis, registry: Registry) -> None:
    clock = Clock(connection, registry)
    assert clock.lease.acquire()
    clock.tick()
    clock.tick()
    assert len(history(connection, "squares")) == 1
    job = scheduled(clock, "squares")
    assert job.latest_enqueue_time is not None
    assert job.next_enqueue_time == job.latest_enqueue_time + timedelta(seconds=60)

    job.next_enqueue_time = datetime.now(UTC) - timedelta(seconds=1)  # as if a minute had passed
    clock.tick()
    assert len(history(connection, "squares")) == 2


def test_a_cron_job_is_due_at_its_next_tick_in_local_time(connection: Redis, registry: Registry) -> None:
    before = datetime.now(UTC)  # times compared with this: a tick may turn while the clock starts
    clock = Clock(connection, registry)
    job = scheduled(clock, "nightly")
    assert job.next_enqueue_time is not None
    assert before < job.next_enqueue_time <= datetime.now(UTC) + timedelta(minutes=5)
    local = job.next_enqueue_time.astimezone()
    assert local.minute % 5 == 0
    assert (local.second, local.microsecond) == (0, 0)

    assert clock.lease.acquire()
    job.next_enqueue_time = datetime.now(UTC) - timedelta(seconds=1)  # the tick has come
    ticked = datetime.now(UTC)
    clock.tick()
    assert len(history(connection, "nightly")) == 1
    assert job.next_enqueue_time > ticked  # and the next one is ahead again


def test_sleeps_are_capped_so_the_lease_is_renewed_in_time(connection: Redis, registry: Registry) -> None:
    clock = Clock(connection, registry, lease_seconds=3)
    assert clock.lease.acquire()
    pause = clock.tick()
    assert pause is not None
    assert 0 < pause <= 1.0


def test_only_the_clock_holding_the_lease_enqueues(connection: Redis, registry: Registry) -> None:
    first, second = Clock(connection, registry), Clock(connection, registry)
    assert first.lease.acquire()
    assert not second.lease.acquire()
    assert second.tick() is None  # standing by: nothing enqueued
    assert history(connection, "squares") == []
    assert first.tick() is not None
    assert len(history(connection, "squares")) == 1
    assert second.lease.holder() == first.name

    first.lease.release()
    assert second.lease.acquire()
    assert second.lease.holder() == second.name
    assert first.tick() is None  # it lost the lease: it enqueues nothing more


def test_a_lapsed_lease_is_taken_over(connection: Redis, registry: Registry) -> None:
    # The first lease short, the second long: a stall of the test lapses neither before its time.
    first = Clock(connection, registry, lease_seconds=1)
    second = Clock(connection, registry, lease_seconds=30)
    assert first.lease.acquire()
    assert not second.lease.acquire()
    time.sleep(1.2)  # the first clock froze, or died without releasing
    assert second.lease.acquire()
    assert first.tick() is None


def test_a_lease_is_renewed_and_released_only_by_its_holder(connection: Redis) -> None:
    mine, theirs = Lease(connection, "mine", 10), Lease(connection, "theirs", 10)
    assert mine.acquire()
    assert mine.acquire()  # holding it already: renewed
    assert not theirs.renew()
    theirs.release()
    assert mine.holder() == "mine"
    ttl = connection.pttl(LEASE_KEY)
    assert 9000 < ttl <= 10000
    mine.release()
    assert mine.holder() is None


def test_each_round_of_the_leader_records_its_time(connection: Redis, registry: Registry) -> None:
    leader, standby = Clock(connection, registry), Clock(connection, registry)
    assert connection.get(CLOCK_TICK_KEY) is None  # no clock ever ticked
    assert leader.lease.acquire()
    before = time.time()
    assert leader.tick() is not None
    ticked = float(connection.get(CLOCK_TICK_KEY) or 0)
    assert before - 0.001 <= ticked <= time.time()
    # A standby asks for the lease every round; it records nothing, its asking is no tick.
    assert not standby.lease.acquire()
    assert standby.tick() is None
    assert float(connection.get(CLOCK_TICK_KEY) or 0) == ticked
    leader.lease.release()
    assert connection.get(CLOCK_TICK_KEY) is not None  # kept: how long ago the last clock ticked


def test_a_new_clock_carries_on_from_the_last_enqueue(connection: Redis, registry: Registry) -> None:
    first = Clock(connection, registry)
    assert first.lease.acquire()
    first.tick()
    first.lease.release()

    # A restart or a takeover: the interval counts from the last clock's enqueue, not from now.
    second = Clock(connection, registry)
    assert second.lease.acquire()
    second.resume()
    assert scheduled(second, "squares").next_enqueue_time == scheduled(first, "squares").next_enqueue_time
    second.tick()
    assert len(history(connection, "squares")) == 1

    # Had the last run been more than an interval ago, it would be due at once.
    connection.zadd(cron_job_registry.get_registry_key(), {"squares": time.time() - 61})
    second.resume()
    second.tick()
    assert len(history(connection, "squares")) == 2


def test_a_cron_tick_recorded_ahead_of_now_is_not_run_twice(registry: Registry, connection: Redis) -> None:
    job = ScheduledJob(_get(registry, "nightly"))
    ahead = job.next_enqueue_time
    assert ahead is not None
    job.resume(ahead)  # a clock whose time ran ahead already enqueued this tick
    assert job.next_enqueue_time == ahead + timedelta(minutes=5)
    assert job.latest_enqueue_time == ahead


def test_one_job_failing_to_enqueue_stops_neither_the_others_nor_the_clock(
    connection: Redis, registry: Registry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(connection, registry)
    nightly = scheduled(clock, "nightly")
    nightly.next_enqueue_time = datetime.now(UTC) - timedelta(seconds=1)

    def broken(*args: Any, **kwargs: Any) -> Job:
        raise RuntimeError("enqueue broke")

    monkeypatch.setattr(scheduled(clock, "squares").registered, "enqueue", broken)
    assert clock.lease.acquire()
    with caplog.at_level(logging.ERROR, logger="service.clock"):
        assert clock.tick() is not None
    assert "could not enqueue squares" in caplog.text
    assert len(history(connection, "nightly")) == 1
    assert not scheduled(clock, "squares").should_run()  # tried again on its next run, not in a loop


def test_one_log_line_per_enqueue(
    connection: Redis, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(connection, registry)
    assert clock.lease.acquire()
    with caplog.at_level(logging.INFO, logger="service.clock"):
        clock.tick()
    [job] = history(connection, "squares")
    lines = [r.getMessage() for r in caplog.records if r.name == "service.clock"]
    assert lines == [f"enqueued squares as job {job.id} on queue high (every 60 s)"]


def test_a_stop_signal_lets_the_round_finish_and_a_second_stops_at_once(
    connection: Redis, registry: Registry
) -> None:
    clock = Clock(connection, registry)
    clock._request_stop(signal.SIGTERM, None)  # mid-round: noted, nothing interrupted
    assert clock._stop_requested
    with pytest.raises(ClockStopped):
        clock._request_stop(signal.SIGTERM, None)


def test_start_leads_until_sigterm_then_lets_go(connection: Redis, registry: Registry) -> None:
    clock = Clock(connection, registry, lease_seconds=30)  # rounds 10 s apart
    previous = signal.getsignal(signal.SIGTERM)
    # The signal comes while the clock sleeps between rounds, as it does nearly all the time: once
    # its first round has enqueued (a loaded machine may take a while), not at a fixed time.
    signalled: list[float] = []

    def stop_once_enqueued() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not get_cron_job_ids("squares", connection):
            time.sleep(0.02)
        time.sleep(0.2)  # the round's last writes; then the clock sleeps
        signalled.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)  # a clock that never enqueued is stopped all the same

    stopper = threading.Thread(target=stop_once_enqueued)
    stopper.start()
    try:
        clock.start()
    finally:
        stopper.join(15)
    assert time.monotonic() - signalled[0] < 5  # woken from its 10 s sleep at once, not at its end
    assert len(history(connection, "squares")) == 1
    assert connection.get(LEASE_KEY) is None  # released: a standby takes over at once
    assert cron_scheduler_registry.get_keys(connection) == []  # RQ's record of its death
    assert signal.getsignal(signal.SIGTERM) is previous


def test_start_stands_by_while_another_clock_leads(connection: Redis, registry: Registry) -> None:
    leader = Clock(connection, registry)
    assert leader.lease.acquire()
    standby = Clock(connection, registry, lease_seconds=0.6)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        standby.start()
    finally:
        timer.cancel()
    assert history(connection, "squares") == []
    assert leader.lease.holder() == leader.name  # a standby's exit leaves the leader's lease alone


def test_main_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "stands by" in capsys.readouterr().out


def _get(registry: Registry, name: str) -> RegisteredJob[..., Any]:
    registered = registry.get(name)
    assert registered is not None
    return registered
