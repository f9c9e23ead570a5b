from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.exceptions import StopRequested
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from jobs.examples import word_count
from service.serializer import JSON
from service.worker.job import OffloadJob
from service.worker.main import (
    build_worker,
    main,
    nice_own_autogroup,
)
from service.worker.worker import ForkWorker, InProcessWorker, OffloadWorker


def not_a_job(path: str) -> None:
    """Importable, but not registered: workers must never run it."""
    Path(path).write_text("ran")


def test_a_worker_refuses_functions_outside_the_catalogue(
    connection: Redis, run_jobs: Callable[[], None], tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    queue = Queue("default", connection=connection, serializer=JSONSerializer)
    job = queue.enqueue(f"{__name__}.not_a_job", str(marker))
    run_jobs()
    stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert stored.get_status() == "failed"
    latest = stored.latest_result()
    assert latest is not None
    assert "is not a registered job" in (latest.exc_string or "")
    assert not marker.exists()


def test_a_pickled_job_is_not_run(connection: Redis, run_jobs: Callable[[], None], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pickled = Queue("default", connection=connection)  # RQ's default serializer is pickle
    job = pickled.enqueue(not_a_job, str(marker))
    run_jobs()
    assert not marker.exists()
    assert connection.hget(job.key, "status") != b"finished"


def test_build_worker_listens_to_the_queues_in_priority_order(connection: Redis) -> None:
    worker = build_worker(connection)
    assert isinstance(worker, ForkWorker)
    assert worker.queue_names() == ["high", "webhooks", "default", "low"]
    assert issubclass(worker.job_class, OffloadJob)
    assert worker.serializer is JSON  # RQ's JSONSerializer (service/serializer.py)
    assert build_worker(connection, ["low"], kind="simple").queue_names() == ["low"]


def test_the_work_horse_ignores_sigterm_so_warm_shutdown_can_finish_the_job(
    connection: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies: list[int] = []
    monkeypatch.setattr(os, "sched_setscheduler", lambda pid, policy, param: policies.append(policy))
    worker = build_worker(connection)
    assert isinstance(worker, ForkWorker)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.setup_work_horse_signals()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert policies == [os.SCHED_IDLE]  # the job yields the CPU to anything else, the web first
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def test_main_refuses_unknown_queues(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["urgent"])
    assert "unknown queues ['urgent']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "kind", "concurrency"),
    [
        ([], {}, "concurrent", 10),
        (["--concurrency", "3"], {"WORKER_KIND": "fork"}, "concurrent", 3),
        ([], {"WORKER_CONCURRENCY": "40"}, "concurrent", 40),
        ([], {"WORKER_KIND": "simple", "WORKER_CONCURRENCY": "40"}, "simple", None),
        (["--kind", "fork"], {"WORKER_CONCURRENCY": "40"}, "fork", None),
    ],
)
def test_main_runs_a_concurrent_worker_unless_told_otherwise(
    argv: list[str],
    env: dict[str, str],
    kind: str,
    concurrency: int | None,
    monkeypatch: pytest.MonkeyPatch,
    connection: Redis,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://fakeredis.invalid:6379/0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("service.worker.main.connect", lambda settings, patient: connection)
    monkeypatch.setattr("service.worker.main.configure_logging", lambda *args: None)
    monkeypatch.setattr(os, "nice", lambda *args: None)
    monkeypatch.setattr("service.worker.main.nice_own_autogroup", lambda *args: None)
    ran: list[tuple[str, int | None]] = []

    def work(self: OffloadWorker, **options: object) -> None:
        ran.append((type(self).__name__, getattr(self, "concurrency", None)))

    monkeypatch.setattr(OffloadWorker, "work", work)
    main(argv)
    names = {"concurrent": "ConcurrentWorker", "fork": "ForkWorker", "simple": "InProcessWorker"}
    assert ran == [(names[kind], concurrency)]


def test_main_gives_a_forking_worker_its_grace_period(
    monkeypatch: pytest.MonkeyPatch, connection: Redis
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://fakeredis.invalid:6379/0")
    monkeypatch.setenv("WORKER_GRACE_SECONDS", "7.5")
    monkeypatch.setenv("WORKER_KIND", "fork")
    monkeypatch.setattr("service.worker.main.connect", lambda settings, patient: connection)
    monkeypatch.setattr("service.worker.main.configure_logging", lambda *args: None)
    seen: list[float] = []
    seen_idle: list[bool] = []

    def work(self: ForkWorker, **options: object) -> None:
        seen.append(self.grace_seconds)
        seen_idle.append(self.idle_priority)

    monkeypatch.setattr(ForkWorker, "work", work)
    niceness: list[int] = []
    monkeypatch.setattr(os, "nice", niceness.append)
    groups: list[int] = []
    monkeypatch.setattr("service.worker.main.nice_own_autogroup", groups.append)
    main([])
    assert groups == [19]
    assert seen == [7.5]
    assert niceness == [19]  # WORKER_NICE's default: jobs yield the CPU to the web
    assert seen_idle == [True]


def test_a_worker_alone_in_its_session_nices_its_autogroup_and_no_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    autogroup = tmp_path / "autogroup"
    monkeypatch.setattr(os, "getsid", lambda pid: 4242)
    monkeypatch.setattr(os, "getpid", lambda: 4242)  # a session leader, as honcho starts it
    nice_own_autogroup(19, autogroup)
    assert autogroup.read_text() == "19"
    autogroup.unlink()
    monkeypatch.setattr(os, "getpid", lambda: 4343)  # in a terminal's session: the shell's group
    nice_own_autogroup(19, autogroup)
    assert not autogroup.exists()
    nice_own_autogroup(19, tmp_path / "no-such-dir" / "autogroup")  # no autogroup: no error


def test_main_leaves_a_simple_worker_at_the_web_s_priority(
    monkeypatch: pytest.MonkeyPatch, connection: Redis
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://fakeredis.invalid:6379/0")
    monkeypatch.setattr("service.worker.main.connect", lambda settings, patient: connection)
    monkeypatch.setattr("service.worker.main.configure_logging", lambda *args: None)
    monkeypatch.setattr(InProcessWorker, "work", lambda self, **options: None)
    niced: list[int] = []
    monkeypatch.setattr(os, "nice", niced.append)
    monkeypatch.setattr("service.worker.main.nice_own_autogroup", niced.append)
    main(["--kind", "simple"])
    assert niced == []  # the latency option: its jobs start at once, whatever the web does


def test_rq_s_own_per_job_lines_are_left_to_offload_s_job_started_and_ended(
    connection: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    enqueued = word_count.enqueue(connection, text="a b")
    with caplog.at_level(logging.INFO):
        build_worker(connection, kind="simple").work(burst=True)
    rq_lines = [r.getMessage() for r in caplog.records if r.name == "rq.worker"]
    assert not [line for line in rq_lines if enqueued.id in line], rq_lines
    ours = [r.getMessage() for r in caplog.records if r.name == "offload.job"]
    assert ours == ["job started", "job ended"]


@pytest.mark.parametrize("kind", ["simple", "concurrent"])
def test_a_suspended_worker_takes_nothing_and_a_resumed_one_within_a_second(
    kind: str, connection: Redis
) -> None:
    job = word_count.enqueue(connection, text="a b")
    worker = build_worker(connection, kind=kind)
    suspend(connection)
    worker.work(burst=True, with_scheduler=False)  # RQ's: a suspended burst worker quits at once
    assert Job.fetch(job.id, connection=connection, serializer=JSONSerializer).get_status() == "queued"
    resume(connection)
    fresh = build_worker(connection, kind=kind)
    fresh.check_for_suspension(burst=True)  # looked at now: not suspended
    suspend(connection)
    fresh.check_for_suspension(burst=True)  # within the second: not looked at again
    fresh._suspension_checked_at -= 1.0  # a second later
    with pytest.raises(StopRequested):
        fresh.check_for_suspension(burst=True)
    resume(connection)
