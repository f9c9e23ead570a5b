"""The blocking client against the app on fakeredis: typed enqueues, waits, and the retries that
never make a second job."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from offload_client import JobView, Retry, UnavailableError, UnreachableError, calls
from tests.unit.client_bridge import AppBridge, Fault


def test_a_typed_enqueue_answers_the_queued_job_and_wait_its_end(
    bridge: AppBridge, run_jobs: Callable[..., None]
) -> None:
    with bridge.client() as offload:
        job = offload.jobs.word_count(text="to be or not to be", top=2)
        assert (job.name, job.status, job.input) == (
            "word_count",
            "queued",
            {"text": "to be or not to be", "top": 2},
        )
        run_jobs()
        ended = offload.wait(job, timeout=5)
    assert ended.status == "finished"
    assert ended.result == {"words": 6, "unique": 4, "top": [["to", 2], ["be", 2]]}


def test_every_enqueue_carries_a_fresh_idempotency_key(bridge: AppBridge) -> None:
    with bridge.client() as offload:
        first = offload.jobs.word_count(text="same")
        second = offload.jobs.word_count(text="same")
    assert first.id != second.id  # two calls, two jobs
    keys = bridge.keys()
    assert len(set(keys)) == 2
    assert all(key is not None and uuid.UUID(key).version == 4 for key in keys)


def test_an_answer_lost_after_the_job_was_written_is_retried_into_the_same_job(bridge: AppBridge) -> None:
    bridge.faults = ["drop"]  # the app enqueued it; the client never heard
    with bridge.client() as offload:
        job = offload.jobs.word_count(text="lost answer")
        listed = offload.list_jobs(name="word_count").jobs
    assert [j.id for j in listed] == [job.id]
    enqueues = [r for r in bridge.requests if r.method == "POST"]
    assert len(enqueues) == 2
    assert enqueues[0].headers["Idempotency-Key"] == enqueues[1].headers["Idempotency-Key"]
    assert enqueues[0].content == enqueues[1].content


def test_refused_connections_and_503s_are_retried_until_one_gets_through(bridge: AppBridge) -> None:
    bridge.faults = ["refuse", "503", "refuse", "drop"]
    with bridge.client() as offload:
        job = offload.enqueue("word_count", {"text": "persistent"})
        assert [j.id for j in offload.list_jobs().jobs] == [job.id]
    assert len(set(bridge.keys()[:5])) == 1  # the five tries of one enqueue, one key


def test_a_batch_retried_after_a_lost_answer_is_the_same_batch(bridge: AppBridge) -> None:
    bridge.faults = ["drop"]
    with bridge.client() as offload:
        jobs = offload.jobs.word_count_batch([{"text": "a"}, {"text": "b", "top": 1}])
        listed = offload.list_jobs(name="word_count").jobs
    assert sorted(j.id for j in jobs) == sorted(j.id for j in listed)
    assert [j.input["text"] for j in jobs] == ["a", "b"]


def test_a_delayed_enqueue_retried_later_makes_one_job(bridge: AppBridge) -> None:
    bridge.faults = ["drop"]
    with bridge.client() as offload:
        job = offload.jobs.word_count(text="later", options={"delay": 60, "queue": "low"})
        [listed] = offload.list_jobs(name="word_count").jobs
    assert (listed.id, listed.status, listed.queue) == (job.id, "scheduled", "low")
    assert job.scheduled_for is not None
    assert job.scheduled_for > datetime.now(UTC)
    first, retry = (r for r in bridge.requests if r.method == "POST")
    assert first.url.params == retry.url.params
    assert first.url.params["delay"] == "60"


def test_options_go_as_query_parameters(bridge: AppBridge) -> None:
    with bridge.client() as offload:
        first = offload.jobs.heartbeat()
        job = offload.jobs.count_primes(
            limit=10, options={"depends_on": [first.id], "retries": 2, "at_front": True, "timeout": 30}
        )
    assert (job.status, job.depends_on, job.retries_left, job.timeout) == ("deferred", [first.id], 2, 30)
    assert bridge.requests[-1].url.params.get_list("at_front") == ["true"]


def test_an_own_idempotency_key_replays_across_clients(bridge: AppBridge) -> None:
    key = f"order-{uuid.uuid4()}"
    with bridge.client() as one, bridge.client() as other:
        first = one.jobs.word_count(text="once", idempotency_key=key)
        again = other.jobs.word_count(text="once", idempotency_key=key)
    assert again.id == first.id


def test_wait_asks_in_slices_and_answers_the_job_as_it_is_when_time_runs_out(
    bridge: AppBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client's clock, not the machine's: each reading 50 ms after the last, however busy it is.
    readings = itertools.count(0.0, 0.05)
    monkeypatch.setattr(calls, "Waiting", functools.partial(calls.Waiting, clock=lambda: next(readings)))
    with bridge.client(wait_slice=0.05) as offload:
        job = offload.jobs.word_count(text="nobody runs this")
        seen = offload.wait(job.id, timeout=0.2)
    assert seen.status == "queued"
    waits = [float(r.url.params["wait"]) for r in bridge.requests if r.method == "GET"]
    assert waits == pytest.approx([0.05, 0.05])


def test_get_cancel_requeue_delete_and_listings(bridge: AppBridge) -> None:
    with bridge.client() as offload:
        job = offload.jobs.very_long_task(seconds=1)
        assert offload.get(job).id == job.id
        assert offload.cancel(job).status == "canceled"
        assert offload.requeue(job).status == "queued"
        offload.cancel(job.id)
        offload.delete(job)
        assert {entry.name for entry in offload.catalog()} >= {"word_count", "very_long_task"}
        assert [q.name for q in offload.queues()][:2] == ["high", "webhooks"]
        assert offload.workers() == []
        assert offload.pause_queue("low").paused is True
        assert offload.resume_queue("low").paused is False
        assert offload.health().status == "ok"
        assert offload.ready().redis == "ok"


def test_the_views_are_the_generated_models(bridge: AppBridge, client: TestClient) -> None:
    with bridge.client() as offload:
        job = offload.jobs.heartbeat()
    assert isinstance(job, JobView)
    assert job.model_dump(mode="json") == client.get(f"/jobs/{job.id}").json()


@pytest.mark.parametrize("fault", ["refuse", "503"])
def test_an_enqueue_gives_up_once_its_tries_are_spent(bridge: AppBridge, fault: Fault) -> None:
    # Counted in tries, not timed: a busy machine must not change the answer (the deadline's own
    # arithmetic is in test_client_retry.py, on a clock of the test's).
    bridge.faults = [fault] * 100
    retry = Retry(deadline=60, attempts=6, first_delay=0.001, max_delay=0.002, jitter=False)
    expected = UnreachableError if fault == "refuse" else UnavailableError
    with bridge.client(retry=retry) as offload, pytest.raises(expected) as raised:
        offload.jobs.word_count(text="never")
    assert len(bridge.requests) == 6
    if fault == "refuse":
        assert type(raised.value.__cause__).__name__ == "ConnectError"


def test_the_package_stands_alone(tmp_path: Path) -> None:
    # Isolated, away from the repository: only what `pip install ./client` gives can be imported.
    code = (
        "import sys, offload_client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'service', 'jobs'}))"
    )
    shown = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert shown.stdout.strip() == "[]"
