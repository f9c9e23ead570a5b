"""Rate limits in the take script (service/store/rates.py, queues.py): a job over its limit is held,
visibly, off its queue and off any worker; the take goes on to the next job; held jobs go back, in
order, as their window frees; an idle worker sleeps until the first is due."""

from __future__ import annotations

from typing import Any

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from service.store import control
from service.store.counts import queue_counts
from service.store.layout import (
    HELD_COUNTS_KEY,
    HELD_DUE_KEY,
    HOLD_FIELD,
    held_key,
    queue_key,
    rate_log_key,
)
from service.store.queues import _TAKE, SafeQueue, _take_keys
from service.store.views import job_view
from service.worker.job import OffloadJob
from tests.unit.flow_catalog import flow

QUEUES = ("high", "default", "low")


def _queues(connection: Redis) -> list[SafeQueue]:
    return [SafeQueue(name, connection=connection, serializer=JSONSerializer) for name in QUEUES]


def _take(connection: Redis, count: int) -> list[str]:
    """The ids a worker takes now (no waiting), as the worker's own take does."""
    job_class = type("FlowJob", (OffloadJob,), {"registry": flow})
    taken = SafeQueue.take(_queues(connection), count, None, connection, job_class, JSONSerializer)
    return [job.id for job, _queue in taken]


def _enqueue(connection: Redis, name: str, **params: Any) -> Job:
    registered = flow.get(name)
    assert registered is not None
    return registered.enqueue(connection, **params)


def _held_ids(connection: Redis, bucket: str) -> list[str]:
    entries: list[bytes] = connection.lrange(held_key(bucket), 0, -1)  # type: ignore[assignment]
    return [entry.decode().split(" ", 1)[1] for entry in entries]


def _free_the_window(connection: Redis, bucket: str) -> None:
    """What the window's passing does, without waiting for it: its starts forgotten, its bucket due."""
    connection.delete(rate_log_key(bucket))
    connection.zadd(HELD_DUE_KEY, {bucket: 0})


def test_jobs_over_their_limit_are_held_and_shown_so(connection: Redis) -> None:
    jobs = [_enqueue(connection, "limited", n=n) for n in range(5)]
    assert _take(connection, 5) == [job.id for job in jobs[:2]]  # 2/second
    assert _held_ids(connection, "limited") == [job.id for job in jobs[2:]]
    assert connection.llen(queue_key("default")) == 0
    assert connection.zcard(rate_log_key("limited")) == 2
    assert queue_counts(connection)["default"]["held"] == 3
    assert queue_counts(connection)["default"]["queued"] == 0

    view = job_view(jobs[2], flow)
    assert view.status == "queued"
    assert view.held is not None
    assert (view.held.reason, view.held.limit, view.held.key) == ("rate_limit", "2/second", None)
    assert view.held.eligible_at is not None
    later = job_view(jobs[4], flow).held
    assert later is not None
    assert later.eligible_at is not None
    # the third held is one window behind the first two (2 a window), the window 1 s + the slack
    assert (later.eligible_at - view.held.eligible_at).total_seconds() == pytest.approx(1.1)
    due = connection.zscore(HELD_DUE_KEY, "limited")
    assert due is not None
    assert int(due) == int(view.held.eligible_at.timestamp() * 1000)


def test_a_held_job_blocks_neither_its_queue_nor_the_worker(connection: Redis) -> None:
    limited = [_enqueue(connection, "limited", n=n) for n in range(4)]
    other = _enqueue(connection, "throttled")  # no limit, behind them in the same queue
    assert _take(connection, 1) == [limited[0].id]
    assert _take(connection, 1) == [limited[1].id]
    assert _take(connection, 1) == [other.id]  # the two over the limit are set aside
    assert _take(connection, 1) == []


def test_held_jobs_go_back_in_order_as_the_window_frees(connection: Redis) -> None:
    jobs = [_enqueue(connection, "limited", n=n) for n in range(5)]
    _take(connection, 5)
    _free_the_window(connection, "limited")
    assert _take(connection, 5) == [jobs[2].id, jobs[3].id]  # oldest first, as many as fit
    assert _held_ids(connection, "limited") == [jobs[4].id]
    assert connection.hget(jobs[4].key, HOLD_FIELD) is not None
    assert connection.hget(jobs[2].key, HOLD_FIELD) is None  # taken: no longer held
    due = connection.zscore(HELD_DUE_KEY, "limited")
    assert due is not None
    assert due > 0  # due again when the starts just logged leave the window
    assert queue_counts(connection)["default"]["held"] == 1


def test_a_new_job_of_a_key_waits_behind_its_held_ones(connection: Redis) -> None:
    jobs = [_enqueue(connection, "limited", n=n) for n in range(3)]
    _take(connection, 5)
    _free_the_window(connection, "limited")
    connection.zrem(HELD_DUE_KEY, "limited")  # the window has room, but the release has not come yet
    newcomer = _enqueue(connection, "limited", n=9)
    assert _take(connection, 1) == [jobs[2].id]  # the newcomer queued it due now: released first
    assert _take(connection, 1) == [newcomer.id]


def test_limits_per_key_hold_only_that_key(connection: Redis) -> None:
    seven = [_enqueue(connection, "per_account", account_id=7, n=n) for n in range(4)]
    eight = _enqueue(connection, "per_account", account_id=8)
    assert _take(connection, 5) == [job.id for job in seven[:3]] + [eight.id]
    assert _held_ids(connection, "per_account:7") == [seven[3].id]
    view = job_view(seven[3], flow).held
    assert view is not None
    assert (view.limit, view.key) == ("3/minute per account_id", "7")


def test_cancelling_a_held_job_takes_it_out_of_line(connection: Redis) -> None:
    jobs = [_enqueue(connection, "limited", n=n) for n in range(4)]
    _take(connection, 5)
    canceled = control.cancel(connection, jobs[2].id, flow)
    assert canceled.status == "canceled"
    assert canceled.held is None
    assert _held_ids(connection, "limited") == [jobs[3].id]
    assert connection.hget(HELD_COUNTS_KEY, "default") == b"1"
    _free_the_window(connection, "limited")
    assert _take(connection, 5) == [jobs[3].id]


def test_a_held_job_whose_record_went_is_dropped_at_its_release(connection: Redis) -> None:
    jobs = [_enqueue(connection, "limited", n=n) for n in range(3)]
    _take(connection, 5)
    connection.delete(jobs[2].key)
    _free_the_window(connection, "limited")
    assert _take(connection, 5) == []
    assert connection.exists(held_key("limited"), HELD_DUE_KEY) == 0
    assert connection.hget(HELD_COUNTS_KEY, "default") == b"0"


def test_an_idle_take_says_when_the_first_held_job_is_due(connection: Redis) -> None:
    for n in range(3):
        _enqueue(connection, "limited", n=n)
    _take(connection, 5)
    keys = _take_keys(_queues(connection))
    reply: Any = connection.eval(_TAKE, len(keys), *keys, *QUEUES, 1)
    taken, wait = reply
    assert taken == []
    # The window (1 s + slack) from the first start, less the time since (a loaded machine's stall
    # included): a sleep, not a spin.
    assert 500 < wait <= 1100


def test_jobs_without_limits_take_no_flow_control_keys(connection: Redis) -> None:
    job = _enqueue(connection, "throttled")
    assert _take(connection, 1) == [job.id]
    assert connection.keys("offload:rate:*") == connection.keys("offload:held*") == []
    stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)
    assert stored.id == job.id
