"""A successful run's end in one round trip (service/worker/finish.py) leaves Redis as RQ's own does.

Each case runs the same job (the same id, by a worker of the same name) twice, in two empty Redis
servers: once ended by the fast end, once by RQ's own `handle_job_success` (the fast end turned
off). Every key must then hold the same thing, but for what the moment decides
(tests/unit/snapshots.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from redis import Redis
from rq import Queue
from rq.executions import Execution
from rq.job import Dependency, Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import BaseWorker

from service.catalog import Registry
from service.store.claim import Claim, claim_runs
from service.store.end import End, end_runs, success_end
from service.store.layout import APPLIED_PREFIX, APPLIED_SECONDS, counter_field
from service.worker import worker as worker_module
from service.worker.main import build_worker
from service.worker.report import job_name
from tests.unit.snapshots import assert_same, snapshot

JOB_ID = "5f0c2b1e-9f7a-4c39-8d0e-2b8f0f7e6a11"
DEPENDENT_ID = "7a1d3c55-0b6e-4f0a-9b1c-3e5d2f4a6b70"
WORKER = "finish-test-worker"

registry = Registry()


@registry.job(name="double")
def double(n: int = 2) -> int:
    return 2 * n


@pytest.fixture
def run_once(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[Redis, list[bool]]]]:
    """Run `prepare`'s jobs to the end in a fresh Redis with a simple worker; with `fast`, or RQ's
    own end. Returns the connection and, for each end, whether the fast end wrote it."""
    opened: list[Redis] = []

    def run(prepare: Callable[[Queue], None], fast: bool) -> tuple[Redis, list[bool]]:
        connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        opened.append(connection)
        prepare(Queue("default", connection=connection, serializer=JSONSerializer))
        worker = build_worker(connection, kind="simple", name=WORKER, registry=registry)
        ends: list[bool] = []
        commit = worker.commit

        def spy(end: End) -> bool:
            ends.append(commit(end))
            return ends[-1]

        monkeypatch.setattr(worker, "commit", spy)
        if not fast:
            monkeypatch.setattr(worker_module, "fast_end", lambda *args: None)
        worker.work(burst=True, with_scheduler=False)
        monkeypatch.undo()
        return connection, ends

    yield run
    for connection in opened:
        connection.close()


def _one(**options: Any) -> Callable[[Queue], None]:
    def prepare(queue: Queue) -> None:
        queue.enqueue_call(double.path, kwargs={"n": 21}, job_id=JOB_ID, **options)

    return prepare


@pytest.mark.parametrize(
    "options",
    [{}, {"result_ttl": 60}, {"result_ttl": -1}, {"ttl": 600, "failure_ttl": 30}, {"description": "ü"}],
    ids=["defaults", "result kept 60 s", "result kept forever", "ttls", "description"],
)
def test_the_fast_end_writes_what_rqs_own_writes(
    options: dict[str, Any], run_once: Callable[..., tuple[Redis, list[bool]]]
) -> None:
    fast, fast_ends = run_once(_one(**options), fast=True)
    rq, rq_ends = run_once(_one(**options), fast=False)
    assert fast_ends == [True]  # the fast end wrote it
    assert rq_ends == []  # RQ's own did
    [mark] = fast.keys(f"{APPLIED_PREFIX}end:*")  # a call sent again finds it applied
    assert 0 < fast.ttl(mark) <= APPLIED_SECONDS
    assert Job.fetch(JOB_ID, connection=fast, serializer=JSONSerializer).return_value() == 42
    assert_same(snapshot(fast), snapshot(rq))


def test_a_job_kept_for_0_seconds_is_ended_by_rqs_own(
    run_once: Callable[..., tuple[Redis, list[bool]]],
) -> None:
    connection, ends = run_once(_one(result_ttl=0), fast=True)
    assert ends == []
    assert not connection.exists(f"rq:job:{JOB_ID}")  # RQ deleted it at once


def test_a_job_with_dependents_falls_back_to_rqs_own_which_enqueues_them(
    run_once: Callable[..., tuple[Redis, list[bool]]],
) -> None:
    def prepare(queue: Queue) -> None:
        queue.enqueue_call(double.path, kwargs={"n": 1}, job_id=JOB_ID)
        queue.enqueue_call(double.path, kwargs={"n": 2}, job_id=DEPENDENT_ID, depends_on=Dependency([JOB_ID]))

    fast, ends = run_once(prepare, fast=True)
    rq, _ = run_once(prepare, fast=False)
    assert ends == [False, True]  # the first's guard saw its dependent; the dependent had none
    dependent = Job.fetch(DEPENDENT_ID, connection=fast, serializer=JSONSerializer)
    assert dependent.get_status() == JobStatus.FINISHED
    assert dependent.return_value() == 4
    assert_same(snapshot(fast), snapshot(rq))


def _claimed(connection: Redis) -> tuple[Job, Execution]:
    """The job of JOB_ID enqueued, taken and claimed by WORKER, run to its return (not yet ended)."""
    Queue("default", connection=connection, serializer=JSONSerializer).enqueue_call(
        double.path, kwargs={"n": 21}, job_id=JOB_ID
    )
    connection.lmove("rq:queue:default", "rq:queue:default:intermediate", "LEFT", "RIGHT")
    job = Job.fetch(JOB_ID, connection=connection, serializer=JSONSerializer)
    [execution] = claim_runs(connection, WORKER, [Claim(job, 20)])
    assert execution is not None
    job.ended_at = now()
    job._result = 42
    return job, execution


def _end(job: Job, execution: Execution) -> End:
    assert job.started_at is not None
    assert job.ended_at is not None
    return success_end(job, execution, WORKER, "double:finished", 500, job.ended_at - job.started_at)


@pytest.mark.parametrize("result_ttl", [500, -1], ids=["kept 500 s", "kept forever"])
def test_the_script_alone_writes_what_rqs_own_end_writes(result_ttl: int) -> None:
    # Straight after the end, before a worker's teardown tidies its own keys: the run's entries in
    # the worker's index and the registries, the worker's counts.
    servers = [fakeredis.FakeRedis(server=fakeredis.FakeServer()) for _ in range(2)]
    scripted, rq = servers
    job, execution = _claimed(scripted)
    assert job.started_at is not None
    assert job.ended_at is not None
    counter = counter_field(job_name(job), "finished")  # as fast_end names it
    end = success_end(job, execution, WORKER, counter, result_ttl, job.ended_at - job.started_at)
    assert end_runs(scripted, [end]) == [True]
    rq_job, rq_execution = _claimed(rq)
    worker = build_worker(rq, kind="simple", name=WORKER, registry=registry)
    worker.default_result_ttl = result_ttl
    worker._saving.job = rq_job  # offload's announcement and count ride in RQ's transaction
    queue = Queue("default", connection=rq, serializer=JSONSerializer)
    BaseWorker.handle_job_success(worker, rq_job, queue, queue.started_job_registry, rq_execution)
    assert_same(snapshot(scripted), snapshot(rq))
    for connection in servers:
        assert connection.hexists(f"rq:worker:{WORKER}", "total_working_time")
        connection.close()


def test_the_guard_and_the_writes_are_one_step(connection: Redis) -> None:
    # A dependent that appears between the job's run and its end is seen by the guard: the end
    # writes nothing, so RQ's own end (with its WATCH) handles it.
    job, execution = _claimed(connection)
    connection.sadd(f"rq:job:{JOB_ID}:dependents", DEPENDENT_ID)
    before = snapshot(connection)
    assert end_runs(connection, [_end(job, execution)]) == [False]
    assert snapshot(connection) == before


def test_an_end_sent_again_after_it_was_applied_is_reported_applied_not_run_twice(connection: Redis) -> None:
    # The reply of the first call was lost (Redis restarting) and redis-py sends the script again:
    # the run would be counted twice.
    job, execution = _claimed(connection)
    end = _end(job, execution)
    assert end_runs(connection, [end]) == [True]
    assert end_runs(connection, [end]) == [True]  # the same call again
    assert connection.hget(f"rq:worker:{WORKER}", "successful_job_count") == b"1"
    assert connection.hget("offload:counters", "double:finished") == b"1"
    assert connection.xlen(f"rq:results:{JOB_ID}") == 1
