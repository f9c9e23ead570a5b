"""Unique jobs (service/store/unique.py): one job per key input while `unique_while` covers it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from redis import Redis
from rq.utils import utcformat

from service.catalog import RegisteredJob, Registry
from service.connection import CommandBatcher
from service.store.enqueue import Enqueued, enqueue, enqueue_async
from service.store.layout import (
    COUNTERS_KEY,
    UNIQUE_LOCK_SECONDS,
    UNIQUE_PREFIX,
    counter_field,
    index_key,
    job_key,
    queue_key,
    unique_key,
)
from service.store.options import EnqueueOptions, Idempotency
from service.store.write import prepare
from service.web.routes import jobs as job_routes

catalog = Registry()


@catalog.job(unique_by=("user_id",), unique_while="queued")
def sync_queued(user_id: int, note: str = "") -> int:
    """Unique while queued."""
    return user_id


@catalog.job(unique_by=("user_id",))  # unique_while defaults to "running"
def sync_running(user_id: int, note: str = "") -> int:
    """Unique while queued or running."""
    return user_id


@catalog.job(unique_by=("user_id",), unique_while="finished_for=600")
def sync_recent(user_id: int, note: str = "") -> int:
    """Unique until ten minutes after it finished."""
    return user_id


@catalog.job(unique_by=("b", "a"))
def pair(a: int, b: dict[str, int], note: str = "") -> int:
    """Keyed on two fields, one of them an object."""
    return a


@catalog.job()
def plain(user_id: int) -> int:
    """Not unique."""
    return user_id


def put(connection: Redis, job: RegisteredJob[..., Any], **params: Any) -> Enqueued:
    """Enqueue one job with these parameters, as every producer does."""
    return enqueue(connection, job, [job.input_model.model_validate(params)])


def status_of(connection: Redis, job_id: str) -> str:
    status = connection.hget(job_key(job_id), "status")
    assert isinstance(status, bytes)
    return status.decode()


def jobs_written(connection: Redis, name: str) -> int:
    return int(connection.hget(COUNTERS_KEY, counter_field(name, "enqueued")) or 0)


def locks(connection: Redis) -> list[bytes]:
    return list(connection.scan_iter(f"{UNIQUE_PREFIX}*"))


# --- the store: each mode, stale locks, batches --------------------------------------------------


def test_a_duplicate_returns_the_job_that_holds_its_key_and_writes_nothing(connection: Redis) -> None:
    first = put(connection, sync_running, user_id=7, note="a")
    before = {key: connection.type(key) for key in connection.scan_iter()}
    again = put(connection, sync_running, user_id=7, note="another note: not a key field")
    assert again.ids == first.ids
    assert (again.duplicates, again.jobs, again.replayed) == ([0], [], False)
    assert {key: connection.type(key) for key in connection.scan_iter()} == before
    assert connection.llen(queue_key("default")) == 1
    assert jobs_written(connection, "sync_running") == 1
    assert connection.zcard(index_key()) == 1
    other = put(connection, sync_running, user_id=8)  # another key: another job
    assert other.ids != first.ids
    assert other.duplicates == []


def test_the_key_is_the_typed_input_whatever_its_spelling(connection: Redis) -> None:
    first = put(connection, pair, a=1, b={"x": 1, "y": 2})
    assert put(connection, pair, b={"y": 2, "x": 1}, a="1", note="n").ids == first.ids  # "1" is 1
    assert put(connection, pair, a=1, b={"x": 1, "y": 3}).ids != first.ids
    [lock, _] = sorted(locks(connection))
    assert lock.startswith(f"{UNIQUE_PREFIX}pair:".encode())


def test_queued_covers_only_jobs_that_have_not_started(connection: Redis) -> None:
    first = put(connection, sync_queued, user_id=1)
    assert put(connection, sync_queued, user_id=1).duplicates == [0]
    connection.hset(job_key(first.ids[0]), "status", "started")  # a worker took it
    second = put(connection, sync_queued, user_id=1)
    assert second.duplicates == []
    assert second.ids != first.ids
    assert put(connection, sync_queued, user_id=1).ids == second.ids  # the new job holds it now


def test_running_covers_started_jobs_and_frees_the_key_at_the_end(
    connection: Redis, run_jobs: Callable[..., None]
) -> None:
    first = put(connection, sync_running, user_id=1)
    connection.hset(job_key(first.ids[0]), "status", "started")
    assert put(connection, sync_running, user_id=1).ids == first.ids
    connection.hset(job_key(first.ids[0]), "status", "queued")
    run_jobs(catalog)
    assert status_of(connection, first.ids[0]) == "finished"
    second = put(connection, sync_running, user_id=1)
    assert second.duplicates == []
    assert second.ids != first.ids


def test_finished_for_covers_a_job_until_that_long_after_it_finished(
    connection: Redis, run_jobs: Callable[..., None]
) -> None:
    first = put(connection, sync_recent, user_id=1)
    run_jobs(catalog)  # the worker's own ended_at, in the format the script compares
    assert status_of(connection, first.ids[0]) == "finished"
    assert put(connection, sync_recent, user_id=1).ids == first.ids
    long_ago = datetime.now(UTC) - timedelta(seconds=601)
    connection.hset(job_key(first.ids[0]), "ended_at", utcformat(long_ago))
    second = put(connection, sync_recent, user_id=1)
    assert second.duplicates == []
    assert second.ids != first.ids


@pytest.mark.parametrize("end", ["failed", "stopped", "canceled", "deleted"])
def test_a_lock_whose_owner_ended_otherwise_is_stale_and_free(connection: Redis, end: str) -> None:
    first = put(connection, sync_recent, user_id=1)
    if end == "deleted":  # or its record expired
        connection.delete(job_key(first.ids[0]))
    else:
        connection.hset(job_key(first.ids[0]), "status", end)
    second = put(connection, sync_recent, user_id=1)
    assert second.duplicates == []
    assert second.ids != first.ids
    [lock] = locks(connection)
    assert connection.get(lock) == second.ids[0].encode()


def test_a_lock_expires_after_the_longest_it_can_matter(connection: Redis) -> None:
    put(connection, sync_running, user_id=1)
    put(connection, sync_recent, user_id=1)
    delayed = EnqueueOptions(at=datetime.now(UTC) + timedelta(hours=1))
    enqueue(connection, sync_queued, [sync_queued.input_model(user_id=1)], delayed)
    ttls = {lock.split(b":")[2]: connection.ttl(lock) for lock in locks(connection)}
    assert UNIQUE_LOCK_SECONDS - 5 <= ttls[b"sync_running"] <= UNIQUE_LOCK_SECONDS
    assert UNIQUE_LOCK_SECONDS + 595 <= ttls[b"sync_recent"] <= UNIQUE_LOCK_SECONDS + 600
    assert UNIQUE_LOCK_SECONDS + 3595 <= ttls[b"sync_queued"] <= UNIQUE_LOCK_SECONDS + 3600


def test_scheduled_and_deferred_jobs_hold_their_key(connection: Redis) -> None:
    later = EnqueueOptions(at=datetime.now(UTC) + timedelta(hours=1))
    scheduled = enqueue(connection, sync_queued, [sync_queued.input_model(user_id=1)], later)
    assert put(connection, sync_queued, user_id=1).ids == scheduled.ids
    dependency = put(connection, plain, user_id=0).ids[0]
    waits = EnqueueOptions(depends_on=(dependency,))
    deferred = enqueue(connection, sync_queued, [sync_queued.input_model(user_id=2)], waits)
    assert status_of(connection, deferred.ids[0]) == "deferred"
    again = enqueue(connection, sync_queued, [sync_queued.input_model(user_id=2)], waits)
    assert again.ids == deferred.ids
    assert connection.scard(f"rq:job:{dependency}:dependents") == 1


def test_duplicates_within_a_batch_get_the_first_items_job(connection: Redis) -> None:
    existing = put(connection, sync_running, user_id=9)
    inputs = [sync_running.input_model(user_id=n) for n in (1, 2, 1, 9, 2)]
    enqueued = enqueue(connection, sync_running, inputs)
    one, two, again_one, nine, again_two = enqueued.ids
    assert (again_one, again_two, nine) == (one, two, existing.ids[0])
    assert len({one, two, nine}) == 3
    assert enqueued.duplicates == [2, 3, 4]
    assert [job.id for job in enqueued.jobs] == [one, two]
    assert jobs_written(connection, "sync_running") == 3
    assert connection.llen(queue_key("default")) == 3
    assert connection.zcard(index_key()) == 3


def test_a_batch_of_duplicates_only_writes_nothing(connection: Redis) -> None:
    put(connection, sync_running, user_id=1)
    before = {key: connection.type(key) for key in connection.scan_iter()}
    enqueued = enqueue(connection, sync_running, [sync_running.input_model(user_id=1)] * 3)
    assert enqueued.duplicates == [0, 1, 2]
    assert enqueued.jobs == []
    assert {key: connection.type(key) for key in connection.scan_iter()} == before
    assert jobs_written(connection, "sync_running") == 1


def test_the_idempotency_key_is_checked_first_and_remembers_the_duplicate(connection: Redis) -> None:
    inputs = [sync_running.input_model(user_id=1)]
    first = enqueue(connection, sync_running, inputs, idempotency=Idempotency("k1", 600))
    dup = enqueue(connection, sync_running, inputs, idempotency=Idempotency("k2", 600))
    assert (dup.ids, dup.duplicates) == (first.ids, [0])
    connection.hset(job_key(first.ids[0]), "status", "failed")  # the key is free again...
    replay = enqueue(connection, sync_running, inputs, idempotency=Idempotency("k2", 600))
    assert (replay.ids, replay.duplicates, replay.replayed) == (first.ids, [0], True)  # ...not for k2
    replay = enqueue(connection, sync_running, inputs, idempotency=Idempotency("k1", 600))
    assert (replay.ids, replay.duplicates, replay.replayed) == (first.ids, [], True)
    assert jobs_written(connection, "sync_running") == 1
    batch = [sync_running.input_model(user_id=n) for n in (5, 5)]
    written = enqueue(connection, sync_running, batch, idempotency=Idempotency("k3", 600))
    replay = enqueue(connection, sync_running, batch, idempotency=Idempotency("k3", 600))
    assert (replay.ids, replay.duplicates) == (written.ids, [1])


def test_racing_duplicates_make_one_job(fake_server: fakeredis.FakeServer, connection: Redis) -> None:
    """Through the web's batcher, as concurrent requests send them: one round trip, one job."""

    async def race() -> list[Enqueued]:
        client = fakeredis.FakeAsyncRedis(server=fake_server)
        try:
            execute = CommandBatcher(client).execute
            params = [sync_running.input_model(user_id=1)]
            return await asyncio.gather(*(enqueue_async(execute, sync_running, params) for _ in range(50)))
        finally:
            await client.aclose()

    answers = asyncio.run(race())
    assert len({answer.ids[0] for answer in answers}) == 1
    assert sorted(len(answer.duplicates) for answer in answers) == [0] + [1] * 49
    assert jobs_written(connection, "sync_running") == 1


def test_jobs_that_declare_no_uniqueness_send_nothing_more() -> None:
    """No lock key, and the script's mode empty: it reads and writes no lock for them."""
    inputs = [{"user_id": 1}, {"user_id": 2}]
    plain_write = prepare(plain, inputs, EnqueueOptions(), None, "")
    unique_write = prepare(sync_running, inputs, EnqueueOptions(), None, "")
    plain_keys, unique_keys = plain_write.command[1], unique_write.command[1]
    assert unique_keys - plain_keys == len(inputs)  # one lock per job, none for the plain job
    assert not any(str(part).startswith(UNIQUE_PREFIX) for part in plain_write.command)
    assert "" in plain_write.command
    assert "running" in unique_write.command


def test_an_in_process_duplicate_returns_the_existing_rq_job(connection: Redis) -> None:
    first = sync_running.enqueue(connection, user_id=3)
    again = sync_running.enqueue(connection, user_id=3)
    assert again.id == first.id
    assert again.kwargs == {"user_id": 3, "note": ""}


# --- declarations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"unique_by": ("nope",)}, ValueError, r"unique_by= names 'nope', not a field .*user_id, note"),
        ({"unique_by": "user_id"}, TypeError, r"tuple of input field names"),
        ({"unique_by": ()}, ValueError, r"at least one input field"),
        ({"unique_while": "running"}, ValueError, r"unique_while= needs unique_by="),
        ({"unique_by": ("user_id",), "unique_while": "finished"}, ValueError, r"not one of 'queued'"),
        ({"unique_by": ("user_id",), "unique_while": "finished_for=0"}, ValueError, "not one of"),
        ({"unique_by": ("user_id",), "unique_while": "finished_for=1m"}, ValueError, "not one of"),
        ({"unique_by": ("user_id",), "unique_while": "Running"}, ValueError, "not one of"),
        (
            {"unique_by": ("user_id",), "unique_while": "finished_for=90000"},
            ValueError,
            r"outlasts its result_ttl \(86400 s\)",
        ),
    ],
)
def test_bad_declarations_fail_at_import(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    registry = Registry()
    with pytest.raises(error, match=message):

        @registry.job(**options)
        def job(user_id: int, note: str = "") -> None: ...

    assert registry.names() == []


def test_a_declaration_keeps_its_fields_and_mode() -> None:
    assert sync_recent.unique is not None
    assert (sync_recent.unique.by, sync_recent.unique.declared) == (("user_id",), "finished_for=600")
    assert sync_running.unique is not None
    assert sync_running.unique.declared == "running"
    assert plain.unique is None


# --- HTTP --------------------------------------------------------------------------------------------


def test_a_duplicate_post_answers_200_with_the_existing_job_and_says_so(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(catalog)
    first = client.post("/jobs/sync_running", json={"user_id": 1})
    assert first.status_code == 202
    assert "offload-duplicate-of" not in first.headers
    again = client.post("/jobs/sync_running", json={"user_id": 1, "note": "x"})
    assert again.status_code == 200, again.text
    job_id = first.json()["id"]
    assert again.headers["offload-duplicate-of"] == job_id == again.json()["id"]
    assert again.headers["location"] == f"/jobs/{job_id}"
    assert again.json()["input"] == {"user_id": 1, "note": ""}  # the existing job's, as it is
    waited = client.post("/jobs/sync_running", json={"user_id": 1}, params={"wait": 0.1})
    assert (waited.status_code, waited.json()["id"]) == (200, job_id)


def test_a_duplicate_is_answered_as_fastapis_handler_would(
    make_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = make_client(catalog)
    monkeypatch.setattr(job_routes, "enqueue_route", lambda job: APIRoute)
    stock = make_client(catalog)
    answers = []
    for user_id, client in enumerate((ours, stock)):
        client.post("/jobs/sync_running", json={"user_id": user_id})
        answers.append(client.post("/jobs/sync_running", json={"user_id": user_id}))
    mine, theirs = answers
    assert mine.status_code == theirs.status_code == 200
    assert [name for name, _ in mine.headers.items()] == [name for name, _ in theirs.headers.items()]


def test_a_batch_answers_202_and_names_the_items_that_got_an_existing_job(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(catalog)
    existing = client.post("/jobs/sync_running", json={"user_id": 9}).json()["id"]
    response = client.post("/jobs/sync_running/batch", json=[{"user_id": 1}, {"user_id": 9}, {"user_id": 1}])
    assert response.status_code == 202, response.text
    assert response.headers["offload-duplicates"] == "1,2"
    one, nine, again = (view["id"] for view in response.json())
    assert (nine, again) == (existing, one)
    plain_batch = client.post("/jobs/sync_running/batch", json=[{"user_id": 2}])
    assert "offload-duplicates" not in plain_batch.headers


def test_a_replayed_duplicate_answers_as_the_first_time(make_client: Callable[..., TestClient]) -> None:
    client = make_client(catalog)
    job_id = client.post("/jobs/sync_running", json={"user_id": 1}).json()["id"]
    headers = {"Idempotency-Key": "retry-me"}
    first = client.post("/jobs/sync_running", json={"user_id": 1}, headers=headers)
    replay = client.post("/jobs/sync_running", json={"user_id": 1}, headers=headers)
    for answer in (first, replay):
        assert (answer.status_code, answer.headers["offload-duplicate-of"]) == (200, job_id)
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"


def test_the_catalog_shows_each_jobs_uniqueness(client: TestClient) -> None:
    entries = {entry["name"]: entry for entry in client.get("/catalog").json()}
    assert entries["sync_account"]["unique_by"] == ["account_id"]
    assert entries["sync_account"]["unique_while"] == "running"
    assert entries["word_count"]["unique_by"] is None
    assert entries["word_count"]["unique_while"] is None


def test_openapi_documents_the_duplicates_200_and_its_headers(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    single = paths["/jobs/sync_account"]["post"]["responses"]
    assert set(single["200"]["headers"]) == {"Offload-Duplicate-Of"}
    assert "account_id" in single["200"]["description"]
    assert single["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobView"}
    assert "202" in single
    batch = paths["/jobs/sync_account/batch"]["post"]["responses"]
    assert set(batch["202"]["headers"]) == {"Offload-Duplicates"}
    assert "200" not in batch
    assert "200" not in paths["/jobs/word_count"]["post"]["responses"]
    assert "headers" not in paths["/jobs/word_count/batch"]["post"]["responses"]["202"]


def test_the_lock_is_named_by_the_canonical_key_input_and_holds_its_owners_id(connection: Redis) -> None:
    first = put(connection, pair, a=1, b={"k": 1})
    [lock] = locks(connection)
    assert connection.get(lock) == first.ids[0].encode()
    canonical = json.dumps({"a": 1, "b": {"k": 1}}, sort_keys=True, separators=(",", ":"))
    assert lock.decode() == unique_key("pair", canonical)
