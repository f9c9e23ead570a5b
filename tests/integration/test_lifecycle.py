"""The job lifecycle over HTTP against the Procfile's web and worker on a real Redis."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from service.dev.harness import Stack, wait_until
from service.settings import Settings

pytestmark = pytest.mark.integration


# The shared stack's worker: the Procfile's default, a concurrent worker of WORKER_CONCURRENCY slots.
WORKER_SLOTS = Settings.model_fields["worker_concurrency"].default


def post(
    stack: Stack, path: str, body: Any = None, headers: dict[str, str] | None = None, **params: Any
) -> Any:
    response = stack.client.post(path, json=body, params=params, headers=headers)
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{stack.logs()}"
    return response.json()


def status(stack: Stack, job_id: str) -> str:
    value: str = stack.client.get(f"/jobs/{job_id}").json()["status"]
    return value


def test_cancel_stops_a_running_job_within_seconds(stack: Stack) -> None:
    long = post(stack, "/jobs/very_long_task", {"seconds": 30})
    assert wait_until(lambda: status(stack, long["id"]) == "started", 10), stack.logs()
    started = time.monotonic()
    response = stack.client.post(f"/jobs/{long['id']}/cancel")
    took = time.monotonic() - started
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "stopped", f"{view}\n{stack.logs()}"
    assert took < 5
    print(f"a running 30 s job was stopped {took:.2f} s after the cancel request")
    # The worker carries on with the next job.
    after = post(stack, "/jobs/word_count", {"text": "still working"})
    assert stack.wait_for_job(after["id"], 10)["status"] == "finished"
    assert stack.client.post(f"/jobs/{long['id']}/cancel").status_code == 409
    assert stack.client.post(f"/jobs/{long['id']}/requeue").json()["status"] == "queued"
    assert wait_until(lambda: status(stack, long["id"]) == "started", 10), stack.logs()
    assert stack.client.post(f"/jobs/{long['id']}/cancel").json()["status"] == "stopped"


def test_an_async_job_runs_its_waits_at_once_and_can_be_stopped(stack: Stack) -> None:
    view = post(stack, "/jobs/wait_for_all", {"waits": [1.0, 1.5, 0.5, 1.5]})
    done = stack.wait_for_job(view["id"], 20)
    assert done["status"] == "finished", f"{done}\n{stack.logs()}"
    assert done["result"]["longest"] == 1.5
    assert 1.5 <= done["result"]["waited"] < 4.5  # at once: not the 4.5 s of their sum
    assert done["progress"]["fraction"] == 1.0
    # A running async job is stopped like any other, and the worker goes on.
    long = post(stack, "/jobs/wait_for_all", {"waits": [30.0]})
    assert wait_until(lambda: status(stack, long["id"]) == "started", 10), stack.logs()
    stopped = stack.client.post(f"/jobs/{long['id']}/cancel").json()
    assert stopped["status"] == "stopped", f"{stopped}\n{stack.logs()}"
    after = post(stack, "/jobs/wait_for_all", {"waits": [0.1]})
    assert stack.wait_for_job(after["id"], 10)["status"] == "finished"


def test_a_delayed_job_runs_when_due(stack: Stack) -> None:
    view = post(stack, "/jobs/word_count", {"text": "later"}, delay=2)
    assert view["status"] == "scheduled"
    assert status(stack, view["id"]) == "scheduled"
    done = stack.wait_for_job(view["id"], 15)
    assert done["status"] == "finished", f"{done}\n{stack.logs()}"
    # RQ keeps due times to the second.
    assert datetime.fromisoformat(done["started_at"]) >= datetime.fromisoformat(view["scheduled_for"])


def test_a_dependent_runs_after_its_dependency(stack: Stack) -> None:
    first = post(stack, "/jobs/very_long_task", {"seconds": 1})
    second = post(stack, "/jobs/word_count", {"text": "after"}, depends_on=first["id"])
    assert second["status"] == "deferred"
    done = stack.wait_for_job(second["id"], 15)
    assert done["status"] == "finished", f"{done}\n{stack.logs()}"
    first_done = stack.client.get(f"/jobs/{first['id']}").json()
    assert datetime.fromisoformat(done["started_at"]) >= datetime.fromisoformat(first_done["ended_at"])


def test_a_replayed_post_makes_one_job(stack: Stack) -> None:
    headers = {"Idempotency-Key": f"integration-{time.time_ns()}"}
    first = post(stack, "/jobs/word_count", {"text": "once"}, headers=headers)
    again = post(stack, "/jobs/word_count", {"text": "once"}, headers=headers)
    assert first["id"] == again["id"]
    other = stack.client.post("/jobs/word_count", json={"text": "twice"}, headers=headers)
    assert other.status_code == 409


def test_a_batch_runs_every_item(stack: Stack) -> None:
    views = post(stack, "/jobs/word_count/batch", [{"text": "a " * n} for n in range(1, 21)])
    assert len(views) == 20
    ended = [stack.wait_for_job(view["id"], 20) for view in views]
    assert [job["result"]["words"] for job in ended] == list(range(1, 21))
    listed = stack.client.get("/jobs", params={"name": "word_count", "limit": 20}).json()["jobs"]
    assert {job["id"] for job in listed} == {view["id"] for view in views}


def test_queues_and_workers_are_shown(stack: Stack) -> None:
    queues = {queue["name"]: queue["counts"] for queue in stack.client.get("/queues").json()}
    assert set(queues) == {"high", "webhooks", "default", "low"}
    assert queues["default"]["finished"] >= 1
    workers = stack.client.get("/workers").json()
    assert len(workers) == 1
    assert workers[0]["queues"] == ["high", "webhooks", "default", "low"]
    assert workers[0]["successful_jobs"] >= 1


def test_no_worker_takes_from_a_paused_queue_until_it_is_resumed(stack: Stack) -> None:
    paused = stack.client.post("/queues/low/pause")
    assert paused.status_code == 200, paused.text
    try:
        held = [post(stack, "/jobs/word_count", {"text": f"held {n}"}, queue="low") for n in range(5)]
        others = [post(stack, "/jobs/word_count", {"text": f"runs {n}"}, queue="default") for n in range(5)]
        # The other queue drains while the paused one keeps every job queued.
        for view in others:
            assert stack.wait_for_job(view["id"], 15)["status"] == "finished", stack.logs()
        time.sleep(1)  # more than a worker's poll of its queues (WAKE_POLL_SECONDS)
        assert [status(stack, view["id"]) for view in held] == ["queued"] * 5
        low = {queue["name"]: queue for queue in stack.client.get("/queues").json()}["low"]
        assert low["paused"] is True
        assert low["counts"]["queued"] == 5
        assert 'offload_queue_paused{queue="low"} 1.0' in stack.client.get("/metrics").text
    finally:
        resumed = stack.client.post("/queues/low/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["paused"] is False
    for view in held:
        assert stack.wait_for_job(view["id"], 15)["status"] == "finished", stack.logs()


def test_a_job_not_started_within_its_ttl_is_canceled_unrun(stack: Stack) -> None:
    # Every slot of the one worker is busy for 6 s: the job queued behind them (posted once all have
    # started, which a loaded machine may take seconds to see) expires before the worker reaches it.
    busy = [post(stack, "/jobs/very_long_task", {"seconds": 6}) for _ in range(WORKER_SLOTS)]
    running = {job["id"] for job in busy}
    assert wait_until(lambda: all(status(stack, job_id) == "started" for job_id in running), 10), stack.logs()
    stale = post(stack, "/jobs/word_count", {"text": "stale"}, ttl=1)
    for job in busy:
        assert stack.wait_for_job(job["id"], 15)["status"] == "finished", stack.logs()
    after = post(stack, "/jobs/word_count", {"text": "fresh"})
    assert stack.wait_for_job(after["id"], 10)["status"] == "finished", stack.logs()
    view = stack.client.get(f"/jobs/{stale['id']}").json()
    assert view["status"] == "canceled", f"{view}\n{stack.logs()}"
    assert view["error"] == {"type": "ExpiredError", "message": "not started within ttl 1 s"}
    assert view["started_at"] is None
    # On a paused queue, where no worker reaches it, it reads canceled once past its ttl too.
    stack.client.post("/queues/low/pause")
    try:
        held = post(stack, "/jobs/word_count", {"text": "held"}, queue="low", ttl=1)
        time.sleep(1.5)
        assert status(stack, held["id"]) == "canceled"
    finally:
        stack.client.post("/queues/low/resume")
