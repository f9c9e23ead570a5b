"""Cancel, requeue and delete over HTTP (stopping a running job is an integration test)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue
from rq.registry import CanceledJobRegistry, FailedJobRegistry


def post(client: TestClient, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
    response = client.post(path, json=body, params=params)
    assert response.status_code == 202, response.text
    view: dict[str, Any] = response.json()
    return view


@pytest.mark.parametrize(
    ("params", "status"), [({}, "queued"), ({"delay": 60}, "scheduled"), ({"depends_on": "DEP"}, "deferred")]
)
def test_cancel_a_job_that_has_not_run(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None], params: dict[str, Any], status: str
) -> None:
    blocker = post(client, "/jobs/word_count", {"text": "x"}, delay=600)
    if "depends_on" in params:
        params = {"depends_on": blocker["id"]}
    view = post(client, "/jobs/word_count", {"text": "a"}, **params)
    assert view["status"] == status
    response = client.post(f"/jobs/{view['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert CanceledJobRegistry("default", connection=connection).get_job_ids() == [view["id"]]
    run_jobs()
    assert client.get(f"/jobs/{view['id']}").json()["status"] == "canceled"


@pytest.mark.parametrize("action", ["cancel", "requeue"])
def test_unknown_ids_are_404(client: TestClient, action: str) -> None:
    assert client.post(f"/jobs/nope/{action}").status_code == 404
    assert client.delete("/jobs/nope").status_code == 404


def test_cancelling_an_ended_job_is_409(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = post(client, "/jobs/word_count", {"text": "a"})
    run_jobs()
    response = client.post(f"/jobs/{view['id']}/cancel")
    assert response.status_code == 409
    assert response.json() == {"detail": "the job is already finished; nothing to cancel"}


def test_requeue_a_failed_job(client: TestClient, connection: Redis, run_jobs: Callable[[], None]) -> None:
    view = post(client, "/jobs/always_fails", {"message": "once"}, retries=0)
    run_jobs()
    assert client.get(f"/jobs/{view['id']}").json()["error"]["message"] == "once"
    response = client.post(f"/jobs/{view['id']}/requeue")
    assert response.status_code == 200
    requeued = response.json()
    assert requeued["status"] == "queued"
    assert requeued["error"] is None
    assert FailedJobRegistry("default", connection=connection).get_job_ids() == []
    assert Queue("default", connection=connection).job_ids == [view["id"]]
    run_jobs()
    assert client.get(f"/jobs/{view['id']}").json()["status"] == "failed"


def test_requeue_a_canceled_job(client: TestClient, run_jobs: Callable[[], None]) -> None:
    view = post(client, "/jobs/word_count", {"text": "a b"})
    client.post(f"/jobs/{view['id']}/cancel")
    assert client.post(f"/jobs/{view['id']}/requeue").json()["status"] == "queued"
    run_jobs()
    assert client.get(f"/jobs/{view['id']}").json()["result"]["words"] == 2


def test_requeueing_a_failed_dependency_releases_its_dependents(
    client: TestClient, run_jobs: Callable[[], None]
) -> None:
    flaky = post(client, "/jobs/word_count", {"text": "a"}, timeout=1)
    dependent = post(client, "/jobs/word_count", {"text": "b"}, depends_on=flaky["id"])
    client.post(f"/jobs/{flaky['id']}/cancel")
    run_jobs()
    assert client.get(f"/jobs/{dependent['id']}").json()["status"] == "deferred"
    client.post(f"/jobs/{flaky['id']}/requeue")
    run_jobs()
    assert client.get(f"/jobs/{dependent['id']}").json()["status"] == "finished"


@pytest.mark.parametrize("finish", [False, True])
def test_requeueing_a_job_that_did_not_fail_is_409(
    client: TestClient, run_jobs: Callable[[], None], finish: bool
) -> None:
    view = post(client, "/jobs/word_count", {"text": "a"})
    if finish:
        run_jobs()
    response = client.post(f"/jobs/{view['id']}/requeue")
    assert response.status_code == 409
    assert "only failed, stopped or canceled jobs" in response.json()["detail"]


def test_delete_an_ended_job(client: TestClient, connection: Redis, run_jobs: Callable[[], None]) -> None:
    view = post(client, "/jobs/word_count", {"text": "a"})
    run_jobs()
    response = client.delete(f"/jobs/{view['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/jobs/{view['id']}").status_code == 404
    assert connection.keys(f"*{view['id']}*") == []
    assert client.get("/jobs").json()["jobs"] == []


def test_deleting_a_job_that_may_still_run_is_409(client: TestClient) -> None:
    view = post(client, "/jobs/word_count", {"text": "a"})
    response = client.delete(f"/jobs/{view['id']}")
    assert response.status_code == 409
    assert response.json() == {"detail": "the job is queued; cancel it before deleting it"}
    assert client.get(f"/jobs/{view['id']}").status_code == 200
