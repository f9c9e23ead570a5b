"""service.serializer.JSON: RQ's JSONSerializer, byte for byte, in the form RQ's check accepts at once."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer, Serializer, resolve_serializer
from rq.utils import import_attribute

from service.serializer import JSON
from service.worker.main import WORKER_KINDS, build_worker

VALUES = [{"a": 1, "b": [1.5, None, True], "c": "é"}, [], "text", 0]


@pytest.mark.parametrize("value", VALUES)
def test_it_writes_and_reads_what_rqs_json_serializer_does(value: object) -> None:
    assert JSON.dumps(value) == JSONSerializer.dumps(value)
    assert JSON.loads(JSONSerializer.dumps(value)) == value


def test_rq_takes_it_as_it_is_without_its_protocol_check() -> None:
    # isinstance's exact-type answer, which skips Serializer's slow Protocol check on Python 3.11:
    # an object of a subclass, or of a class of its own, would go through the check every time.
    assert type(JSON) is Serializer
    assert resolve_serializer(JSON) is JSON


@pytest.mark.parametrize("kind", sorted(WORKER_KINDS))
def test_a_worker_names_it_by_an_importable_path(connection: Redis, kind: str) -> None:
    """RQ names a worker's serializer by module and qualified name (a spawned work horse imports it)."""
    worker = build_worker(connection, kind=kind)
    assert worker.serializer is JSON
    named: object = import_attribute(worker._serializer_arg)  # type: ignore[arg-type]
    assert named is JSON


def test_a_job_written_with_it_reads_back_with_rqs_own(connection: Redis) -> None:
    job = Queue("default", connection=connection, serializer=JSON).enqueue("jobs.examples.word_count", "a b")
    stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert list(stored.args) == ["a b"]
    assert stored.func_name == "jobs.examples.word_count"
