"""The claim script (service/store/claim.py) leaves Redis as RQ's own start of a run does.

Each case takes the same job (the same id, for a worker of the same name) in two empty Redis
servers, and claims it once by the script and once by RQ's own calls (`Execution.create`,
`Job.prepare_for_execution`, then offload's PERSIST and the LREM off the intermediate list) on a
pipeline. Every key must then hold the same thing, but for what the moment decides
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
from rq.job import Job, JobStatus

from service.connection import script
from service.serializer import JSON
from service.store import claim as claim_module
from service.store.claim import Claim, claim_runs
from service.store.layout import APPLIED_PREFIX, APPLIED_SECONDS, intermediate_key, worker_key
from tests.unit.snapshots import assert_same, snapshot

JOB_ID = "0b7f6c3a-52d1-4e8b-9a41-6f2d8c1e9b30"
WORKER = "claim-test-worker"


def _taken(connection: Redis, queue: str = "default", **options: Any) -> Job:
    """A job enqueued and taken as a worker's take leaves it: its id moved to the intermediate list."""
    Queue(queue, connection=connection, serializer=JSON).enqueue_call(
        "tests.unit.test_claim.nothing", job_id=JOB_ID, **options
    )
    connection.lmove(f"rq:queue:{queue}", intermediate_key(queue), "LEFT", "RIGHT")
    return Job.fetch(JOB_ID, connection=connection, serializer=JSON)


def nothing() -> None:
    """Never run: the tests only claim it."""


def _rqs_own(connection: Redis, job: Job, ttl: int) -> Execution:
    with connection.pipeline() as pipe:
        execution = Execution.create(job, ttl, pipeline=pipe, worker_name=WORKER)
        job.prepare_for_execution(WORKER, pipeline=pipe)
        pipe.persist(job.key)
        pipe.lrem(intermediate_key(job.origin), 1, job.id)
        pipe.execute()
    return execution


@pytest.fixture
def servers() -> Iterator[Callable[[], Redis]]:
    opened: list[Redis] = []

    def server() -> Redis:
        opened.append(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
        return opened[-1]

    yield server
    for connection in opened:
        connection.close()


@pytest.mark.parametrize("ttl", [20, 240], ids=["concurrent worker's heartbeat", "simple worker's"])
@pytest.mark.parametrize(
    ("queue", "options"),
    [("default", {}), ("high", {"ttl": 600, "result_ttl": 60, "meta": {"progress": 0.5}})],
    ids=["defaults", "options"],
)
def test_the_script_writes_what_rqs_own_calls_write(
    servers: Callable[[], Redis], ttl: int, queue: str, options: dict[str, Any]
) -> None:
    scripted, rq = servers(), servers()
    job = _taken(scripted, queue, **options)
    [execution] = claim_runs(scripted, WORKER, [Claim(job, ttl)])
    rq_job = _taken(rq, queue, **options)
    rq_execution = _rqs_own(rq, rq_job, ttl)
    assert execution is not None
    assert_same(snapshot(scripted), snapshot(rq))
    # The objects read as RQ's own leave them: the job started by this worker, the run its own.
    for name in ("worker_name", "_status"):
        assert getattr(job, name) == getattr(rq_job, name), name
    assert job.started_at is not None
    assert job.started_at == job.last_heartbeat
    assert (execution.job_id, execution.worker_name) == (rq_execution.job_id, rq_execution.worker_name)
    assert execution.created_at == execution.last_heartbeat
    assert Execution.fetch(execution.id, JOB_ID, scripted).worker_name == WORKER
    [mark] = scripted.keys(f"{APPLIED_PREFIX}claim:*")
    assert mark == f"{APPLIED_PREFIX}claim:{execution.id}".encode()
    assert 0 < scripted.ttl(mark) <= APPLIED_SECONDS


@pytest.mark.parametrize("how", ["canceled", "deleted", "given back"])
def test_a_claim_that_does_not_hold_writes_nothing(servers: Callable[[], Redis], how: str) -> None:
    connection = servers()
    job = _taken(connection)
    if how == "canceled":
        connection.hset(job.key, "status", JobStatus.CANCELED.value)
    elif how == "deleted":
        connection.delete(job.key)
    else:  # a sweep put it back at the front of its queue
        connection.lmove(intermediate_key("default"), "rq:queue:default", "RIGHT", "LEFT")
    before = snapshot(connection)
    assert claim_runs(connection, WORKER, [Claim(job, 20)]) == [None]
    assert snapshot(connection) == before
    assert job.get_status(refresh=False) == JobStatus.QUEUED  # the object as taken, too


def test_each_claim_holds_on_its_own_and_the_trailing_writes_run_whatever_became_of_them(
    servers: Callable[[], Redis],
) -> None:
    connection = servers()
    queue = Queue("default", connection=connection, serializer=JSON)
    jobs = [queue.enqueue_call("tests.unit.test_claim.nothing") for _ in range(3)]
    for _ in jobs:
        connection.lmove("rq:queue:default", intermediate_key("default"), "LEFT", "RIGHT")
    connection.hset(jobs[1].key, "status", JobStatus.CANCELED.value)
    trailing = [("HSET", worker_key(WORKER), "state", "busy")]
    claimed = claim_runs(connection, WORKER, [Claim(job, 20) for job in jobs], trailing)
    assert [execution is not None for execution in claimed] == [True, False, True]
    statuses = [Job.fetch(job.id, connection=connection, serializer=JSON).get_status() for job in jobs]
    assert statuses == [JobStatus.STARTED, JobStatus.CANCELED, JobStatus.STARTED]
    assert connection.lrange(intermediate_key("default"), 0, -1) == [jobs[1].id.encode()]
    assert connection.hget(worker_key(WORKER), "state") == b"busy"
    assert claim_runs(connection, WORKER, [Claim(jobs[1], 20)], trailing) == [None]


def test_a_call_sent_again_after_it_was_applied_reports_the_claim_held(
    servers: Callable[[], Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its reply was lost (Redis restarting) and redis-py sends the same call again: the LREM now
    # finds nothing, but the mark says the claim is this worker's; nothing is written twice.
    connection = servers()
    job = _taken(connection)
    registered = script(connection, claim_module._CLAIM)
    calls: list[tuple[Any, ...]] = []
    real_call = type(registered).__call__

    def twice(self: Any, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        calls.append(tuple(args))
        real_call(self, keys=keys, args=args, client=client)
        return real_call(self, keys=keys, args=args, client=client)

    monkeypatch.setattr(type(registered), "__call__", twice)
    [execution] = claim_runs(connection, WORKER, [Claim(job, 20)])
    assert execution is not None
    assert len(calls) == 1
    assert connection.zcard("rq:wip:default") == 1
    assert connection.llen(intermediate_key("default")) == 0
