"""offload's one writer leaves Redis as RQ's own enqueue does, plus offload's index and counters.

Each case writes the same jobs (the same ids) twice, into two empty Redis servers: once through
`service.store.enqueue.enqueue` (one script) and once through RQ's own `Queue.enqueue_call` or
`Queue.enqueue_at`, with the arguments the job's defaults and the options mean. Every key RQ
owns must hold the same thing in both; offload's own keys are checked on their own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from pydantic import BaseModel
from redis import Redis
from rq import Callback, Queue, RateLimit, Retry
from rq.job import Dependency, Job, JobStatus
from rq.serializers import JSONSerializer

from service.catalog import RegisteredJob, load_catalog
from service.connection import CommandBatcher, unpacked
from service.logs import request_id_var
from service.store.enqueue import (
    Enqueued,
    IdempotencyConflictError,
    UnknownDependencyError,
    enqueue,
    enqueue_async,
)
from service.store.layout import (
    CALLBACK_HOOKS,
    COUNTERS_KEY,
    RATE_FIELD,
    counter_field,
    idempotency_key,
    index_key,
    job_key,
    wake_key,
)
from service.store.options import EnqueueOptions, Idempotency, retry_intervals
from service.store.views import new_job_view
from tests.unit.flow_catalog import flow

# Set by RQ at the moment of writing: the two writers cannot agree on them.
TIMESTAMPS = {b"created_at", b"enqueued_at"}
# Scored by the second of the write: members compared, in order, not scores.
SCORED_BY_SECOND = (b"rq:deferred:", b"rq:rl:")
AT = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
DEPENDENCY = "0f8fad5b-d9cb-469f-a165-70867728950e"

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
    "ttl": ("word_count", [{"text": "soon"}], EnqueueOptions(ttl=30)),
    "ttl and callback": (
        "word_count",
        [{"text": "soon"}],
        EnqueueOptions(ttl=5, callback_url="https://example.com/hook"),
    ),
    "batch": ("word_count", [{"text": str(n) * 100} for n in range(5)], EnqueueOptions(retries=1)),
    "waits": ("word_count", [{"text": "a"}, {"text": "b"}], EnqueueOptions(depends_on=(DEPENDENCY,))),
    "unique": ("sync_account", [{"account_id": 1}, {"account_id": 2}], EnqueueOptions()),
    "unique scheduled": ("sync_account", [{"account_id": 1}], EnqueueOptions(at=AT)),
    "unique waits": ("sync_account", [{"account_id": 1}], EnqueueOptions(depends_on=(DEPENDENCY,))),
    "may fail": (
        "word_count",
        [{"text": "a"}],
        EnqueueOptions(depends_on=(DEPENDENCY,), allow_failure=True, queue="low", at_front=True),
    ),
    # Concurrency caps: RQ's RateLimit, as Queue._enqueue_rate_limited_job writes it.
    "capped": ("capped", [{"n": n} for n in range(3)], EnqueueOptions()),
    "capped per key": (
        "per_customer",
        [{"customer_id": c} for c in ("a", "a", "b", "a")],
        EnqueueOptions(queue="high"),
    ),
    "capped at front": ("capped", [{"n": 1}], EnqueueOptions(at_front=True)),
    "capped later": ("capped", [{"n": 1}], EnqueueOptions(at=AT)),
    "capped waits": ("capped", [{"n": 1}], EnqueueOptions(depends_on=(DEPENDENCY,))),
    # Rate limits are offload's: RQ's keys as without one, plus the limit in an offload field.
    "rate limited": ("limited", [{"n": 1}], EnqueueOptions()),
    "rate limited per key and capped": (
        "per_account",
        [{"account_id": 7}, {"account_id": 8}],
        EnqueueOptions(),
    ),
}
# The dependency's status before the enqueue, for the cases with one.
DEPENDENCY_STATES = ("queued", "finished", "failed")


def _registered(name: str) -> RegisteredJob[..., Any]:
    registered = load_catalog().get(name) or flow.get(name)
    assert registered is not None
    return registered


def _inputs(registered: RegisteredJob[..., Any], items: list[dict[str, Any]]) -> list[BaseModel]:
    return [registered.input_model.model_validate(item) for item in items]


def _by_rq(
    connection: Redis,
    registered: RegisteredJob[..., Any],
    items: list[dict[str, Any]],
    options: EnqueueOptions,
    ids: list[str],
    meta: dict[str, Any] | None = None,
) -> None:
    """RQ's own enqueue of the same jobs: what the job's defaults and these options mean to RQ, and
    `meta` what a request adds to the job's meta."""
    defaults = registered.defaults
    queue = Queue(options.queue or defaults.queue, connection=connection, serializer=JSONSerializer)
    retries = defaults.retries if options.retries is None else options.retries
    hooks: dict[str, Any] = {}
    if options.callback_url is not None:
        hooks = {option: Callback(path) for option, path in CALLBACK_HOOKS.items()}
        hooks["meta"] = {"callback": {"url": options.callback_url, "status": "pending", "attempts": 0}}
    ttl = defaults.ttl if options.ttl is None else options.ttl
    if ttl is not None:  # where the worker and the views read it (service/store/expiry.py)
        hooks["meta"] = {**hooks.get("meta", {}), "ttl": ttl}
    if meta:
        hooks["meta"] = {**hooks.get("meta", {}), **meta}
    arguments: dict[str, Any] = {
        "result_ttl": defaults.result_ttl if options.result_ttl is None else options.result_ttl,
        "failure_ttl": defaults.failure_ttl,
        "retry": Retry(max=retries, interval=retry_intervals(defaults.retry_intervals, retries))
        if retries
        else None,
        **hooks,
    }
    timeout = defaults.timeout if options.timeout is None else options.timeout
    for job_id, kwargs in zip(ids, items, strict=True):
        cap = registered.flow.concurrency if registered.flow is not None else None
        if cap is not None:
            assert registered.flow is not None
            field = registered.flow.concurrency_key
            key = registered.name if field is None else f"{registered.name}:{kwargs[field]}"
            arguments["rate_limit"] = RateLimit(key, cap)
        if options.at is not None:
            queue.enqueue_at(
                options.at, registered.func, kwargs=kwargs, job_timeout=timeout, job_id=job_id, **arguments
            )
            continue
        depends_on = (
            Dependency(
                jobs=list(options.depends_on),
                allow_failure=options.allow_failure,
                enqueue_at_front=options.at_front,
            )
            if options.depends_on
            else None
        )
        queue.enqueue_call(
            registered.func,
            kwargs=kwargs,
            timeout=timeout,
            depends_on=depends_on,
            job_id=job_id,
            at_front=options.at_front,
            **arguments,
        )


def _rq_state(redis: Redis) -> dict[bytes, Any]:
    """Every key RQ owns and its value, hashes as RQ reads them, ignoring the write's instant."""
    connection: Any = redis  # replies are bytes: no decode_responses
    state: dict[bytes, Any] = {}
    for key in connection.keys("rq:*"):
        kind = connection.type(key)
        value: Any
        if kind == b"hash":
            value = {
                f: v
                for f, v in connection.hgetall(key).items()
                if f not in TIMESTAMPS and not f.startswith(b"offload_")  # offload's own: below
            }
        elif kind == b"list":
            value = connection.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(connection.smembers(key))
        else:
            assert kind == b"zset", key
            entries = connection.zrange(key, 0, -1, withscores=True)
            by_second = key.startswith(SCORED_BY_SECOND)
            value = [member for member, _ in entries] if by_second else entries
        state[key] = value
    return state


def _prepare_dependency(connections: Sequence[Redis], state: str) -> None:
    for connection in connections:
        Queue(connection=connection, serializer=JSONSerializer).enqueue_call(
            _registered("word_count").func, kwargs={"text": "first"}, job_id=DEPENDENCY
        )
        connection.hset(job_key(DEPENDENCY), "status", state)


def _cases() -> list[tuple[str, str | None]]:
    return [
        (case, state)
        for case, (_, _, options) in CASES.items()
        for state in (DEPENDENCY_STATES if options.depends_on else (None,))
    ]


@pytest.mark.parametrize(("case", "dependency"), _cases())
def test_offload_writes_what_rq_writes(case: str, dependency: str | None) -> None:
    name, items, options = CASES[case]
    registered = _registered(name)
    ours, theirs = (
        fakeredis.FakeRedis(server=fakeredis.FakeServer()),
        fakeredis.FakeRedis(server=fakeredis.FakeServer()),
    )
    if dependency is not None:
        _prepare_dependency((ours, theirs), dependency)

    inputs = _inputs(registered, items)
    enqueued = enqueue(ours, registered, inputs, options)
    _by_rq(theirs, registered, [params.model_dump(mode="json") for params in inputs], options, enqueued.ids)

    assert _rq_state(ours) == _rq_state(theirs)
    for written in enqueued.jobs:  # what the API answers without reading back is what RQ reads
        job = Job.fetch(written.id, connection=ours, serializer=JSONSerializer)
        assert job.get_status() == written.status
        assert (job.kwargs, job.origin, job.timeout, job.retries_left, job.meta) == (
            written.kwargs,
            written.queue,
            written.timeout,
            written.retries_left,
            written.meta,
        )
        assert (job.created_at, job.enqueued_at, job._dependency_ids) == (
            written.created_at,
            written.enqueued_at,
            written.depends_on,
        )
    _assert_offload_keys(ours, registered, options, enqueued)


def _assert_offload_keys(
    connection: Redis, registered: RegisteredJob[..., Any], options: EnqueueOptions, enqueued: Enqueued
) -> None:
    queue = options.queue or registered.defaults.queue
    for key in (index_key(), index_key(name=registered.name), index_key(queue=queue)):
        assert [m.decode() for m in connection.zrange(key, 0, -1)] == enqueued.ids  # type: ignore[union-attr]
    counted = connection.hget(COUNTERS_KEY, counter_field(registered.name, "enqueued"))
    assert counted == str(len(enqueued.ids)).encode()
    runnable = sum(job.status == JobStatus.QUEUED.value for job in enqueued.jobs)
    assert connection.llen(wake_key(queue)) == runnable
    flow_control = registered.flow
    for job in enqueued.jobs:
        spec = connection.hget(job_key(job.id), RATE_FIELD)
        if flow_control is None or flow_control.rate is None:
            assert spec is None
            continue
        field = flow_control.rate_key
        bucket = registered.name if field is None else f"{registered.name}:{job.kwargs[field]}"
        window = flow_control.rate.per * 1000 + 100
        assert spec == f"{flow_control.rate.limit} {window} {bucket}".encode()


@pytest.mark.parametrize("case", ["defaults", "ttl and callback", "scheduled", "batch"])
def test_the_requests_id_goes_into_each_jobs_meta_as_rq_would_write_it(case: str) -> None:
    """The request id (service/logs.py `request_id_var`) travels in RQ's own meta field: the writes
    are still RQ's, with the meta RQ would write had it been given the id."""
    name, items, options = CASES[case]
    registered = _registered(name)
    ours, theirs = (
        fakeredis.FakeRedis(server=fakeredis.FakeServer()),
        fakeredis.FakeRedis(server=fakeredis.FakeServer()),
    )
    inputs = _inputs(registered, items)
    token = request_id_var.set("req-17")
    try:
        enqueued = enqueue(ours, registered, inputs, options)
    finally:
        request_id_var.reset(token)
    kwargs = [params.model_dump(mode="json") for params in inputs]
    _by_rq(theirs, registered, kwargs, options, enqueued.ids, meta={"request_id": "req-17"})

    assert _rq_state(ours) == _rq_state(theirs)
    for written in enqueued.jobs:
        job = Job.fetch(written.id, connection=ours, serializer=JSONSerializer)
        assert job.meta == written.meta
        assert written.meta["request_id"] == "req-17"
        assert new_job_view(written, name).request_id == "req-17"
    # Without a request, the template's packed meta goes as it is.
    again = enqueue(ours, registered, inputs, options).jobs[0]
    assert "request_id" not in again.meta
    assert "request_id" not in Job.fetch(again.id, connection=ours, serializer=JSONSerializer).meta


def test_a_missing_dependency_writes_nothing() -> None:
    registered = _registered("word_count")
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    _prepare_dependency([connection], "finished")
    before = _rq_state(connection)
    missing = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    options = EnqueueOptions(depends_on=(DEPENDENCY, missing))
    with pytest.raises(UnknownDependencyError, match=missing) as raised:
        enqueue(connection, registered, _inputs(registered, [{"text": "a"}]), options)
    assert raised.value.missing == [missing]
    assert _rq_state(connection) == before
    assert connection.exists(index_key(), COUNTERS_KEY) == 0


def test_an_idempotency_key_replays_its_first_request_and_refuses_another() -> None:
    registered = _registered("word_count")
    connection = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    key = Idempotency("order-17", ttl=600)
    inputs = _inputs(registered, [{"text": "a"}, {"text": "b"}])
    first = enqueue(connection, registered, inputs, EnqueueOptions(), key)
    assert not first.replayed
    record = json.loads(connection.get(idempotency_key("order-17")) or "")
    assert record["job_ids"] == first.ids
    assert 590 <= connection.ttl(idempotency_key("order-17")) <= 600
    state = _rq_state(connection)

    again = enqueue(connection, registered, inputs, EnqueueOptions(), key)
    assert (again.ids, again.replayed, again.jobs) == (first.ids, True, [])
    for other_inputs, other_options in (
        (_inputs(registered, [{"text": "a"}]), EnqueueOptions()),
        (inputs, EnqueueOptions(queue="high")),
    ):
        with pytest.raises(IdempotencyConflictError):
            enqueue(connection, registered, other_inputs, other_options, key)
    assert _rq_state(connection) == state  # neither the replay nor the refusals wrote a job
    assert connection.hget(COUNTERS_KEY, counter_field("word_count", "enqueued")) == b"2"


def _write_async(server: fakeredis.FakeServer, write: Callable[[Any], Any]) -> Any:
    async def run() -> Any:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            return await write(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_the_event_loops_enqueue_is_the_same_write() -> None:
    """`enqueue_async` sends the very command `enqueue` sends, through the web's batcher."""
    registered = _registered("word_count")
    server = fakeredis.FakeServer()
    options = EnqueueOptions(depends_on=(DEPENDENCY,))
    connection = fakeredis.FakeRedis(server=server)
    _prepare_dependency([connection], "queued")
    inputs = _inputs(registered, [{"text": "a b"}])
    enqueued: Enqueued = _write_async(
        server, lambda client: enqueue_async(CommandBatcher(client).execute, registered, inputs, options)
    )
    job = Job.fetch(enqueued.ids[0], connection=connection, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.DEFERRED == enqueued.jobs[0].status
    assert new_job_view(enqueued.jobs[0], "word_count").depends_on == [DEPENDENCY]


def test_the_script_is_loaded_into_a_new_redis_once() -> None:
    registered = _registered("word_count")
    server = fakeredis.FakeServer()
    sent: list[str] = []

    async def write_twice(client: Any) -> None:
        batcher = CommandBatcher(client)

        async def execute(*args: Any) -> Any:
            sent.append(str(unpacked(args)[0]))
            return await batcher.execute(*args)

        for _ in range(2):
            await enqueue_async(execute, registered, _inputs(registered, [{"text": "a"}]))

    _write_async(server, write_twice)
    assert sent == ["EVALSHA", "SCRIPT", "EVALSHA", "EVALSHA"]
    assert fakeredis.FakeRedis(server=server).llen("rq:queue:default") == 2


def test_enqueued_jobs_run_on_an_rq_worker(connection: Redis, run_jobs: Callable[[], None]) -> None:
    registered = _registered("word_count")
    enqueued = enqueue(connection, registered, _inputs(registered, [{"text": "a b c"}, {"text": "d"}]))
    run_jobs()
    for job_id, words in zip(enqueued.ids, (3, 1), strict=True):
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.FINISHED
        result = job.return_value()
        assert result is not None
        assert result["words"] == words
