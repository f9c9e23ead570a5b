"""A stopping forking worker requeues the job it cannot finish in time (service/worker/shutdown.py).

A real child process stands in for the work horse (RQ's monitor waits on it with `os.wait4`); the
job's side of the run is what the horse would have written to Redis.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import pytest
from redis import Redis
from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import as_text, now

from jobs.examples import very_long_task
from service.settings import Settings
from service.store.layout import COUNTERS_KEY
from service.store.options import EnqueueOptions
from service.worker.main import build_worker
from service.worker.shutdown import DEFAULT_GRACE_SECONDS
from service.worker.worker import ForkWorker


@dataclass
class Running:
    """A job in the middle of its run, as a forking worker and its horse would leave it."""

    worker: ForkWorker
    job: Job  # the worker's copy, as dequeued
    queue: Queue
    execution: Execution
    horse: subprocess.Popen[bytes]
    behind: str  # a job queued after it

    def monitor(self) -> float:
        """RQ's monitor of the horse, until the horse ends; the seconds it took."""
        started = time.monotonic()
        self.worker.monitor_work_horse(self.job, self.queue, self.execution)
        return time.monotonic() - started

    def stored(self) -> Job:
        return Job.fetch(self.job.id, connection=self.worker.connection, serializer=JSONSerializer)


class StartRun(Protocol):
    def __call__(self, horse_seconds: float = 60) -> Running: ...


@pytest.fixture
def start_run(connection: Redis) -> Iterator[StartRun]:
    """`start_run(horse_seconds)`: a very_long_task (2 retries) mid-run; everything stopped after."""
    made: list[Running] = []

    def start(horse_seconds: float = 60) -> Running:
        job = very_long_task.enqueue(connection, EnqueueOptions(retries=2), seconds=60)
        behind = very_long_task.enqueue(connection, seconds=1)
        worker = build_worker(connection)
        assert isinstance(worker, ForkWorker)
        dequeued = worker.dequeue_job_and_maintain_ttl(None)
        assert dequeued is not None
        job, queue = dequeued
        execution = worker.prepare_execution(job)
        # The horse's side: its own copy of the job, started, with some progress.
        in_horse = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
        worker.prepare_job_execution(in_horse)
        in_horse.meta["progress"] = {"fraction": 0.5, "message": "halfway"}
        in_horse.save_meta()
        # Its own process group, as RQ's horse (os.setpgrp), so the worker can kill it by group.
        horse = subprocess.Popen(["sleep", str(horse_seconds)], start_new_session=True)
        worker._horse_pid = horse.pid
        running = Running(worker, job, queue, execution, horse, behind.id)
        made.append(running)
        return running

    yield start
    for running in made:
        running.horse.kill()
        running.horse.wait()
        running.worker.teardown()


def queued(connection: Redis) -> list[str]:
    return [as_text(job_id) for job_id in connection.lrange("rq:queue:default", 0, -1)]


def assert_requeued_as_before(running: Running, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    connection = running.worker.connection
    stored = running.stored()
    assert stored.get_status() == JobStatus.QUEUED
    assert stored.retries_left == 2
    assert (stored.started_at, stored.ended_at, stored.worker_name) == (None, None, None)
    assert "progress" not in stored.meta
    assert queued(connection) == [running.job.id, running.behind]
    assert running.job.id not in StartedJobRegistry("default", connection=connection)
    assert running.job.id not in FailedJobRegistry("default", connection=connection)
    assert connection.xlen(Result.get_key(running.job.id)) == 0
    assert connection.hget(COUNTERS_KEY, "very_long_task:interrupted") == b"1"
    assert connection.hget(COUNTERS_KEY, "very_long_task:failed") is None
    requeued = [record for record in caplog.records if record.getMessage() == "job requeued"]
    assert len(requeued) == 1
    assert requeued[0].fields["reason"] == reason  # type: ignore[attr-defined]


def test_a_job_still_running_when_the_grace_period_ends_goes_back_to_the_front_of_its_queue(
    start_run: StartRun, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_run()
    running.worker.grace_seconds = 0.3
    running.worker.handle_warm_shutdown_request()  # what RQ's SIGTERM handler calls
    assert 0.3 <= running.monitor() < 2
    assert_requeued_as_before(running, "grace period over", caplog)


def test_a_job_that_ends_within_the_grace_period_is_left_alone(start_run: StartRun) -> None:
    running = start_run(horse_seconds=0.1)
    running.worker.grace_seconds = 5
    running.worker.handle_warm_shutdown_request()
    assert running.monitor() < 2
    assert running.stored().get_status() == JobStatus.STARTED  # as the stand-in horse left it
    assert queued(running.worker.connection) == [running.behind]


def test_a_second_signal_requeues_the_job_at_once(
    start_run: StartRun, caplog: pytest.LogCaptureFixture
) -> None:
    running = start_run()
    worker = running.worker
    worker.handle_warm_shutdown_request()  # the first signal: 25 s of grace
    worker._shutdown_requested_date = now() - timedelta(seconds=2)
    second = threading.Timer(0.2, worker.request_force_stop, (signal.SIGTERM, None))
    second.start()
    try:
        assert running.monitor() < 2
    finally:
        second.join()
    assert_requeued_as_before(running, "cold shutdown", caplog)
    # With no job left to requeue, a further signal is RQ's cold shutdown.
    with pytest.raises(SystemExit):
        worker.request_force_stop(signal.SIGTERM, None)


def test_a_repeat_of_the_first_signal_within_a_second_is_ignored(start_run: StartRun) -> None:
    running = start_run(horse_seconds=0.3)
    worker = running.worker
    worker.handle_warm_shutdown_request()
    worker._shutdown_requested_date = now()
    repeat = threading.Timer(0.1, worker.request_force_stop, (signal.SIGTERM, None))
    repeat.start()
    try:
        running.monitor()
    finally:
        repeat.join()
    # Not requeued (that would be `queued`): the horse ran to its end, the repeat ignored.
    assert running.stored().get_status() == JobStatus.STARTED


def test_a_stop_asked_for_by_a_user_wins_over_the_requeue(start_run: StartRun) -> None:
    running = start_run()
    running.worker._stopped_job_id = running.job.id  # RQ's stop command, as a cancel sends it
    running.worker.grace_seconds = 0.1
    running.worker.handle_warm_shutdown_request()
    running.monitor()
    assert running.stored().get_status() == JobStatus.STOPPED
    assert running.job.id in FailedJobRegistry("default", connection=running.worker.connection)


def test_the_default_grace_period_is_the_workers() -> None:
    settings = Settings(redis_url="redis://localhost:6379/0")
    assert settings.worker_grace_seconds == DEFAULT_GRACE_SECONDS < 30  # Heroku's SIGKILL
