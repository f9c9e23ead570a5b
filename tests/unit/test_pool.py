"""The recycled process pool's bookkeeping (service/worker/pool.py), without forking: on fakeredis.

tests/integration/test_worker_pool.py runs the pool's real processes on a real redis-server.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

import fakeredis
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerData

from jobs.examples import very_long_task, word_count
from service.catalog import load_catalog
from service.settings import Settings
from service.store.layout import started_key, worker_key, worker_runs_key
from service.store.options import EnqueueOptions
from service.store.queues import SafeQueue
from service.worker.concurrent import ConcurrentWorker
from service.worker.main import build_worker, main
from service.worker.pool import OffloadPool, run_child
from service.worker.recovery import lapse_runs
from service.worker.worker import OffloadWorker


@dataclass
class DeadProcess:
    """What the pool reads of a child it found dead."""

    exitcode: int | None = -9


def claim_next(worker: OffloadWorker) -> Job:
    """Take and claim the next job as `worker`, as its work loop would, and stop there: it 'dies'."""
    worker.register_birth()  # type: ignore[no-untyped-call]  # rq leaves it unannotated
    taken = worker.dequeue_job_and_maintain_ttl(None)
    assert taken is not None
    job, _ = taken
    worker.prepare_execution(job)
    return job


def scores(connection: Redis) -> dict[str, float]:
    """The default queue's started registry: when each run lapses."""
    entries: list[tuple[bytes, float]] = connection.zrange(started_key("default"), 0, -1, withscores=True)  # type: ignore[assignment]
    return {entry.decode(): score for entry, score in entries}


def status(connection: Redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).get_status().value


@pytest.fixture
def pool(connection: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> OffloadPool:
    """A pool that forks nothing: `started` lists the children it would have started."""
    created = OffloadPool(settings, connection, load_catalog(), num_workers=2, max_jobs_per_child=7)
    created.started = []  # type: ignore[attr-defined]
    monkeypatch.setattr(created, "start_worker", lambda **kwargs: created.started.append(kwargs))  # type: ignore[attr-defined]
    return created


def test_a_dead_childs_run_lapses_at_once_and_only_its_own(connection: Redis) -> None:
    doomed, alive = (build_worker(connection, kind="simple", name=name) for name in ("doomed", "alive"))
    jobs = [very_long_task.enqueue(connection, EnqueueOptions(retries=1), seconds=60) for _ in range(2)]
    claim_next(doomed)
    claim_next(alive)
    assert all(
        score > 3000 for score in scores(connection).values()
    )  # an in-process run lapses at its timeout + 60 s
    lapsed = lapse_runs(connection, "doomed")
    assert [queue for queue, _ in lapsed] == ["default"]
    assert lapsed[0][1].startswith(jobs[0].id + ":")
    after = scores(connection)
    assert after[lapsed[0][1]] == 0
    assert sorted(after.values())[1] > 3000  # the live worker's run is untouched
    assert not connection.exists(worker_runs_key("doomed"))
    assert lapse_runs(connection, "doomed") == []  # nothing left to lapse


def test_lapse_does_not_bring_back_a_run_already_ended(connection: Redis) -> None:
    worker = build_worker(connection, kind="simple", name="child")
    very_long_task.enqueue(connection, seconds=60)
    claim_next(worker)
    connection.delete(started_key("default"))  # a sweep recovered it meanwhile
    assert lapse_runs(connection, "child") == []
    assert not connection.exists(started_key("default"))


def test_the_pool_recovers_a_dead_childs_job_at_once(connection: Redis, pool: OffloadPool) -> None:
    retried = very_long_task.enqueue(connection, EnqueueOptions(retries=1), seconds=60)
    final = very_long_task.enqueue(connection, EnqueueOptions(retries=0), seconds=60)
    children = [build_worker(connection, kind="simple", name=name) for name in ("one", "two")]
    for child in children:
        claim_next(child)
    for child in children:
        pool.handle_dead_worker(WorkerData(child.name, 1, DeadProcess()))  # type: ignore[arg-type]
    again = Job.fetch(retried.id, connection=connection, serializer=JSONSerializer)
    assert again.get_status() == "scheduled"  # retried after its backoff interval, one retry spent
    assert again.retries_left == 0
    assert status(connection, final.id) == "failed"
    assert not any(connection.exists(worker_key(child.name)) for child in children)
    assert connection.zcard(started_key("default")) == 0


def test_a_sweep_held_by_another_worker_is_tried_again(connection: Redis, pool: OffloadPool) -> None:
    job = very_long_task.enqueue(connection, EnqueueOptions(retries=1), seconds=60)
    child = build_worker(connection, kind="simple", name="child")
    claim_next(child)
    lock = SafeQueue("default", connection=connection).registry_cleaning_key
    connection.set(lock, 1)  # a child is sweeping right now, from before the run lapsed
    pool.handle_dead_worker(WorkerData("child", 1, DeadProcess()))  # type: ignore[arg-type]
    assert status(connection, job.id) == "started"
    connection.delete(lock)
    pool.check_workers(respawn=False)  # the pool's loop, a second later
    assert status(connection, job.id) == "scheduled"


def test_a_child_that_ended_its_work_leaves_nothing_to_recover(connection: Redis, pool: OffloadPool) -> None:
    pool.handle_dead_worker(WorkerData("recycled", 1, DeadProcess(exitcode=0)))  # type: ignore[arg-type]
    assert connection.zcard(started_key("default")) == 0


def test_a_child_is_an_in_process_worker_recycled_after_its_jobs(
    connection: Redis, settings: Settings, pool: OffloadPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = pool.get_worker_process("child", burst=True)
    assert process._target is run_child  # type: ignore[attr-defined]
    assert process._kwargs["max_jobs"] == 7  # type: ignore[attr-defined]
    for _ in range(3):
        word_count.enqueue(connection, text="a b")
    monkeypatch.setattr("service.worker.pool.connect", lambda *args, **kwargs: connection)
    monkeypatch.setattr("service.worker.pool.signal.signal", lambda *args: None)  # pytest's stay
    run_child("child", ["default"], settings, load_catalog(), burst=True, max_jobs=2)
    assert connection.llen("rq:queue:default") == 1  # it stopped after two


def test_a_concurrent_child_runs_its_slots_and_stops_after_its_jobs_not_its_loops(
    connection: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = load_catalog()
    pool = OffloadPool(settings, connection, catalog, num_workers=2, max_jobs_per_child=5, concurrency=3)
    process = pool.get_worker_process("child", burst=True)
    assert process._kwargs["concurrency"] == 3  # type: ignore[attr-defined]
    built: list[ConcurrentWorker] = []
    monkeypatch.setattr("service.worker.pool.connect", lambda *args, **kwargs: connection)
    monkeypatch.setattr("service.worker.pool.signal.signal", lambda *args: None)  # pytest's stay
    real_build = build_worker

    def spy(*args: Any, **kwargs: Any) -> OffloadWorker:
        worker = real_build(*args, **kwargs)
        assert isinstance(worker, ConcurrentWorker)
        built.append(worker)
        return worker

    monkeypatch.setattr("service.worker.pool.build_worker", spy)
    for _ in range(8):
        word_count.enqueue(connection, text="a b")
    try:
        run_child("child", ["default"], settings, load_catalog(), burst=True, max_jobs=5, concurrency=3)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # RQ's loop installs its own for good
        signal.signal(signal.SIGINT, signal.default_int_handler)
    [worker] = built
    assert worker.concurrency == 3
    # Five runs, in batches of up to three: RQ's own count (a turn of its loop) would allow more.
    assert connection.llen("rq:queue:default") == 3


@pytest.mark.parametrize(
    ("argv", "env", "children"),
    [
        (["--processes", "2"], {}, 1),
        (["--processes", "2", "--concurrency", "4"], {}, 4),
        (["--processes", "2", "--kind", "concurrent"], {"WORKER_CONCURRENCY": "6"}, 6),
        ([], {"WORKER_PROCESSES": "2", "WORKER_CONCURRENCY": "5"}, 5),
        ([], {"WORKER_PROCESSES": "2", "WORKER_KIND": "concurrent"}, 10),
        ([], {"WORKER_PROCESSES": "2"}, 1),
    ],
)
def test_a_pools_children_run_one_job_at_a_time_unless_asked_for_more(
    argv: list[str], env: dict[str, str], children: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:1/0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started: list[OffloadPool] = []
    monkeypatch.setattr("service.worker.main.connect", lambda *args, **kwargs: fakeredis.FakeRedis())
    monkeypatch.setattr(OffloadPool, "start", lambda self, **kwargs: started.append(self))
    niced: list[str] = []
    monkeypatch.setattr("service.worker.main.os.nice", lambda n: niced.append(f"process {n}"))
    monkeypatch.setattr(
        "service.worker.main.nice_own_autogroup", lambda value: niced.append(f"group {value}")
    )
    main(argv)
    [pool] = started
    assert pool.concurrency == children
    # Concurrent children yield the CPU to the web, as a concurrent worker alone does (WORKER_NICE,
    # inherited from the pool); simple ones are the latency option, at the web's priority.
    assert niced == (["process 19", "group 19"] if children > 1 else [])


def test_a_worker_past_its_memory_cap_stops_after_the_job(connection: Redis) -> None:
    for _ in range(2):
        word_count.enqueue(connection, text="a b")
    worker = build_worker(connection, kind="simple")
    worker.max_memory_mb = 1  # any Python process is bigger
    worker.work(burst=True, with_scheduler=False)
    assert connection.llen("rq:queue:default") == 1
    roomy = build_worker(connection, kind="simple")
    roomy.max_memory_mb = 1 << 20
    roomy.work(burst=True, with_scheduler=False)
    assert connection.llen("rq:queue:default") == 0


def test_a_burst_pool_replaces_a_recycled_child_while_jobs_wait(connection: Redis, pool: OffloadPool) -> None:
    pool._burst = True
    pool.check_workers(respawn=False)
    assert pool.started == []  # type: ignore[attr-defined]  # nothing waits: the children may end
    word_count.enqueue(connection, text="a b")
    pool.check_workers(respawn=False)
    assert len(pool.started) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-jobs-per-child", "5"], "add --processes N"),
        (["--processes", "2", "--kind", "fork"], "run their jobs in-process"),
        (["--processes", "0"], "at least 1"),
        (["--processes", "2", "--max-memory-per-child", "0"], "must be positive"),
        (["--processes", "2", "--name", "w"], "names each child"),
    ],
)
def test_pool_options_that_cannot_work_are_refused(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:1/0")
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


def test_a_fork_worker_ignores_worker_processes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://localhost:1/0")
    monkeypatch.setenv("WORKER_PROCESSES", "2")
    built: list[str] = []

    class Stop(Exception):
        pass

    def refuse(*args: Any, **kwargs: Any) -> None:
        built.append(args[2] if len(args) > 2 else "")
        raise Stop

    monkeypatch.setattr("service.worker.main.build_worker", refuse)
    monkeypatch.setattr("service.worker.main.connect", lambda *args, **kwargs: None)
    monkeypatch.setattr("service.worker.main.os.nice", lambda *args: None)
    monkeypatch.setattr("service.worker.main.nice_own_autogroup", lambda *args: None)
    with pytest.raises(Stop):
        main(["--kind", "fork"])
    assert built == ["fork"]  # one forking worker, no pool
