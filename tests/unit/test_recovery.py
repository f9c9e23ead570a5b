"""The worker's bookkeeping round trips (service/worker/recovery.py FewerRoundTrips)."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq.worker import WorkerStatus

from service.worker.main import build_worker


def test_plain_heartbeats_within_a_second_of_a_plain_one_are_not_sent(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    worker = build_worker(connection, kind="simple")
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    worker.heartbeat()
    assert connection.ttl(worker.key) > 60
    connection.expire(worker.key, 5)  # so that a heartbeat shows
    clock[0] += 0.5
    worker.heartbeat()
    assert connection.ttl(worker.key) <= 5  # skipped: the expiry was pushed half a second ago
    clock[0] += 0.6
    worker.heartbeat()
    assert connection.ttl(worker.key) > 60


def test_a_run_s_heartbeat_is_always_sent_and_the_plain_one_after_it_too(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "monotonic", lambda: 1000.0)  # all within one instant
    worker = build_worker(connection, kind="simple")
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    worker.heartbeat()
    worker.heartbeat(20)  # a run's, shorter
    assert 0 < connection.ttl(worker.key) <= 20
    worker.heartbeat()  # restores the full length at once, not a second later
    assert connection.ttl(worker.key) > 60


def test_a_state_already_written_is_not_written_again(connection: Redis) -> None:
    worker = build_worker(connection, kind="simple")
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    worker.set_state(WorkerStatus.IDLE)
    connection.hset(worker.key, "state", "marker")
    worker.set_state(WorkerStatus.IDLE)
    assert connection.hget(worker.key, "state") == b"marker"
    worker.set_state(WorkerStatus.BUSY)
    assert connection.hget(worker.key, "state") == b"busy"
