from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.utils import utcformat, utcparse

from service.serializer import JSON
from service.worker.job import DATE_FIELDS, OffloadJob, parse_stamp

MOMENTS = [
    datetime(2026, 12, 8, 1, 20, 1, 505123, tzinfo=UTC),
    datetime(2026, 12, 8, 1, 20, 1, 0, tzinfo=UTC),  # no fraction: RQ still writes six zeros
    datetime(2026, 12, 8, 1, 20, 1, 1, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1999, 12, 31, 0, 0, 0, 500000, tzinfo=UTC),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_date_rq_wrote_is_read_as_rq_reads_it(moment: datetime) -> None:
    stamp = utcformat(moment)
    for value in (stamp, stamp.encode()):
        parsed = parse_stamp(value)
        assert parsed == utcparse(stamp) == moment
        assert parsed.tzinfo == utcparse(stamp).tzinfo


def test_rq_s_older_date_format_is_left_to_rq() -> None:
    assert parse_stamp("2026-12-08T01:20:01Z") == utcparse("2026-12-08T01:20:01Z")
    with pytest.raises(ValueError, match="does not match format"):
        parse_stamp("8 December 2026")  # as RQ's: not a date of a job
    with pytest.raises(ValueError, match="does not match format"):
        parse_stamp("2026-12-08 01:20:01.505123Z")  # RQ's length, not its format


def test_a_restored_job_reads_as_rq_s_own_restore_leaves_it(connection: Redis) -> None:
    queue = Queue("default", connection=connection, serializer=JSON)
    job = queue.enqueue("jobs.examples.word_count", "a b", result_ttl=60)
    started = datetime.now(UTC) - timedelta(seconds=3)
    connection.hset(
        job.key,
        mapping={
            "started_at": utcformat(started),
            "ended_at": utcformat(started + timedelta(seconds=2)),
            "last_heartbeat": utcformat(started + timedelta(seconds=1)),
        },
    )
    stored = connection.hgetall(job.key)
    assert {name.encode() for name in DATE_FIELDS} <= set(stored)

    ours = OffloadJob(job.id, connection=connection, serializer=JSON)
    ours.restore(dict(stored))
    rqs = Job(job.id, connection=connection, serializer=JSON)
    rqs.restore(dict(stored))

    for name in DATE_FIELDS:
        assert getattr(ours, name) == getattr(rqs, name) is not None, name
    assert ours.to_dict() == rqs.to_dict()


def test_a_job_without_dates_is_restored_as_rq_restores_it(connection: Redis) -> None:
    queue = Queue("default", connection=connection, serializer=JSON)
    job = queue.enqueue("jobs.examples.word_count", "a b")
    connection.hset(job.key, "enqueued_at", "")  # RQ reads an empty date as a missing one
    connection.hdel(job.key, "created_at")  # and a missing created_at as now
    before = datetime.now(UTC)
    ours = OffloadJob(job.id, connection=connection, serializer=JSON)
    ours.restore(connection.hgetall(job.key))
    assert ours.enqueued_at is None
    assert ours.started_at is None
    assert ours.created_at >= before
