"""The fast enqueue path leaves Redis exactly as RQ's own path does, and RQ workers run its jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from pydantic import BaseModel
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service.catalog import RegisteredJob, load_catalog
from service.store.enqueue import EnqueueOptions, Idempotency, NewJob, enqueue, enqueue_fast, fast_path_allows
from service.store.layout import INDEX_KEY

# Set by RQ at the moment of writing: the two paths cannot agree on them.
TIMESTAMPS = {b"created_at", b"enqueued_at"}
AT = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

CASES: dict[str, tuple[str, list[dict[str, Any]], EnqueueOptions]] = {
    "defaults": ("very_long_task", [{"seconds": 5}], EnqueueOptions()),
    "no input": ("count_primes", [{}], EnqueueOptions()),
    "overrides": (
        "word_count",
        [{"text": "a b"}],
        EnqueueOptions(queue="high", timeout=30, retries=3, result_ttl=60),
    ),
    "at front": ("word_count", [{"text": "x"}], EnqueueOptions(at_front=True)),
    "callback": ("word_count", [{"text": "ü"}], EnqueueOptions(callback_url="https://example.com/hook")),
    "scheduled": ("word_count", [{"text": "later"}], EnqueueOptions(at=AT, queue="low")),
    "batch": ("word_count", [{"text": str(n) * 100} for n in range(5)], EnqueueOptions(retries=1)),
}


def _registered(name: str) -> RegisteredJob[..., Any]:
    registered = load_catalog().get(name)
    assert registered is not None
    return registered


def _inputs(registered: RegisteredJob[..., Any], items: list[dict[str, Any]]) -> list[BaseModel]:
    return [registered.input_model.model_validate(item) for item in items]


def _write_fast(
    server: fakeredis.FakeServer,
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions,
) -> list[NewJob]:
    async def write() -> list[NewJob]:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            return await enqueue_fast(client.execute_command, registered, inputs, options)
        finally:
            await client.aclose()

    return asyncio.run(write())


def _snapshot(redis: Redis) -> dict[bytes, Any]:
    """Every key and its value, job ids replaced by their rank and listing scores made relative."""
    connection: Any = redis  # replies are bytes: no decode_responses
    ranks = {job_id: b"job%d" % n for n, job_id in enumerate(connection.zrange(INDEX_KEY, 0, -1))}

    def plain(data: bytes) -> bytes:
        for job_id, rank in ranks.items():
            data = data.replace(job_id, rank)
        return data

    state: dict[bytes, Any] = {}
    for key in connection.keys("*"):
        kind = connection.type(key)
        value: Any
        if kind == b"hash":  # in field order: HGETALL as a worker reads it
            value = [(f, plain(v)) for f, v in connection.hgetall(key).items() if f not in TIMESTAMPS]
        elif kind == b"list":
            value = [plain(item) for item in connection.lrange(key, 0, -1)]
        elif kind == b"set":
            value = sorted(plain(member) for member in connection.smembers(key))
        else:
            assert kind == b"zset", key
            entries = connection.zrange(key, 0, -1, withscores=True)
            relative = key.startswith(INDEX_KEY.encode())  # listing scores are enqueue times
            base = entries[0][1] if entries and relative else 0
            value = [(plain(member), score - base) for member, score in entries]
        state[plain(key)] = value
    return state


@pytest.mark.parametrize("case", CASES)
def test_the_fast_path_writes_what_rqs_path_writes(case: str) -> None:
    name, items, options = CASES[case]
    registered = _registered(name)
    by_rq, by_fast = fakeredis.FakeServer(), fakeredis.FakeServer()
    rq_connection, fast_connection = fakeredis.FakeRedis(server=by_rq), fakeredis.FakeRedis(server=by_fast)

    enqueue(rq_connection, registered, _inputs(registered, items), options)
    new = _write_fast(by_fast, registered, _inputs(registered, items), options)

    expected = _snapshot(rq_connection)
    assert _snapshot(fast_connection) == expected
    assert len(new) == len(items)
    assert len([key for key in expected if key.startswith(b"rq:job:")]) == len(items)


@pytest.mark.parametrize("case", CASES)
def test_rq_reads_back_what_the_fast_path_says_it_wrote(case: str) -> None:
    name, items, options = CASES[case]
    registered = _registered(name)
    server = fakeredis.FakeServer()
    new = _write_fast(server, registered, _inputs(registered, items), options)
    connection = fakeredis.FakeRedis(server=server)
    for written in new:
        job = Job.fetch(written.id, connection=connection, serializer=JSONSerializer)
        assert job.func_name == registered.path
        assert (job.kwargs, job.origin, job.get_status()) == (written.kwargs, written.queue, written.status)
        assert (job.timeout, job.retries_left, job.meta) == (
            written.timeout,
            written.retries_left,
            written.meta,
        )
        assert job.created_at == written.created_at
        assert job.enqueued_at == written.enqueued_at


def test_fast_path_jobs_run_on_an_rq_worker(connection: Redis, run_jobs: Callable[[], None]) -> None:
    registered = _registered("word_count")
    server = connection.connection_pool.connection_kwargs["server"]
    new = _write_fast(
        server, registered, _inputs(registered, [{"text": "a b c"}, {"text": "d"}]), EnqueueOptions()
    )
    run_jobs()
    for written, words in zip(new, (3, 1), strict=True):
        job = Job.fetch(written.id, connection=connection, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FINISHED
        result = job.return_value()
        assert result is not None
        assert result["words"] == words


def test_the_fast_path_loads_its_script_into_a_new_redis_once() -> None:
    registered = _registered("word_count")
    server = fakeredis.FakeServer()
    sent: list[str] = []

    async def write_twice() -> None:
        client = fakeredis.FakeAsyncRedis(server=server)

        async def execute(*args: Any) -> Any:
            sent.append(str(args[0]))
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]

        try:
            for _ in range(2):
                await enqueue_fast(
                    execute, registered, _inputs(registered, [{"text": "a"}]), EnqueueOptions()
                )
        finally:
            await client.aclose()

    asyncio.run(write_twice())
    assert sent == ["EVALSHA", "SCRIPT", "EVALSHA", "EVALSHA"]
    assert fakeredis.FakeRedis(server=server).llen("rq:queue:default") == 2


def test_requests_that_must_watch_keys_are_not_for_the_fast_path() -> None:
    assert fast_path_allows(EnqueueOptions(at=AT), None)
    assert not fast_path_allows(EnqueueOptions(depends_on=("a",)), None)
    assert not fast_path_allows(EnqueueOptions(), Idempotency("key", 60))
    registered = _registered("word_count")
    with pytest.raises(ValueError, match="dependencies"):
        _write_fast(
            fakeredis.FakeServer(),
            registered,
            _inputs(registered, [{"text": "a"}]),
            EnqueueOptions(depends_on=("a",)),
        )
