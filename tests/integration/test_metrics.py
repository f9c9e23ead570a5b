"""/metrics and the logs of the Procfile's own web and worker, on a real Redis."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.dev.harness import Stack, StartRedis, running_stack, wait_until

pytestmark = pytest.mark.integration

TOKEN = "integration-metrics-token-0123456789"
# What uvicorn's access log would print; the app logs each request itself instead.
ACCESS_LINE = re.compile(r'"(GET|POST) /\S* HTTP/1\.1" \d{3}')


def post(stack: Stack, name: str, body: Any = None, **params: Any) -> str:
    response = stack.client.post(f"/jobs/{name}", json=body if body is not None else {}, params=params)
    assert response.status_code == 202, f"{response.status_code} {response.text}\n{stack.logs()}"
    job_id: str = response.json()["id"]
    return job_id


def scrape(stack: Stack, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each metric's samples by sorted labels, read by Prometheus' official parser."""
    response = stack.client.get("/metrics", headers=headers)
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{stack.logs()}"
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_a_scrape_matches_the_apis_counts(stack: Stack) -> None:
    ids = [post(stack, "word_count", {"text": f"job {n}"}) for n in range(3)]
    ids.append(post(stack, "always_fails", retries=0))
    for job_id in ids:
        assert stack.wait_for_job(job_id, 30)["status"] in ("finished", "failed"), stack.logs()
    post(stack, "word_count", {"text": "later"}, delay=600)  # stays scheduled

    def idle() -> bool:  # a worker turns idle a moment after its last job's end is saved
        return all(worker["state"] == "idle" for worker in stack.client.get("/workers").json())

    assert wait_until(idle, 10), stack.logs()
    samples = scrape(stack)
    queues = stack.client.get("/queues").json()
    workers = stack.client.get("/workers").json()
    assert samples["offload_redis_up"] == {(): 1}
    assert samples["offload_jobs"] == {
        (("queue", queue["name"]), ("status", status)): count
        for queue in queues
        for status, count in queue["counts"].items()
    }
    assert samples["offload_jobs"][(("queue", "default"), ("status", "finished"))] == 3
    assert samples["offload_jobs"][(("queue", "default"), ("status", "scheduled"))] == 1
    by_state = {labels[0][1]: count for labels, count in samples["offload_workers"].items()}
    assert sum(by_state.values()) == len(workers) == 1
    assert by_state[workers[0]["state"]] == 1
    enqueued = samples["offload_jobs_enqueued_total"]
    assert enqueued[(("job", "word_count"),)] == 4
    assert enqueued[(("job", "always_fails"),)] == 1
    runs = samples["offload_job_runs_total"]
    assert runs[(("job", "word_count"), ("outcome", "finished"))] == 3
    assert runs[(("job", "always_fails"), ("outcome", "failed"))] == 1
    requests = samples["offload_http_requests_total"]
    assert requests[(("method", "POST"), ("route", "/jobs/word_count"), ("status", "202"))] == 4


def test_a_stopped_run_is_counted_by_the_worker_that_ran_it(stack: Stack) -> None:
    job_id = post(stack, "very_long_task", {"seconds": 30})
    started = wait_until(lambda: stack.client.get(f"/jobs/{job_id}").json()["status"] == "started", 15)
    assert started, stack.logs()
    assert stack.client.post(f"/jobs/{job_id}/cancel").json()["status"] == "stopped"

    def stopped_runs() -> float:
        runs = scrape(stack)["offload_job_runs_total"]
        return runs[(("job", "very_long_task"), ("outcome", "stopped"))]

    # The forking worker's parent reports it, once it has reaped the killed work horse.
    assert wait_until(lambda: stopped_runs() == 1, 10), stack.logs()
    worker_log = stack.processes["worker"].log_path.read_text()
    assert re.search(rf"job ended job_id={job_id} job=very_long_task .*outcome=stopped", worker_log)


def test_each_request_is_logged_once_by_the_app_not_by_uvicorn(stack: Stack) -> None:
    response = stack.client.get("/healthz", headers={"X-Request-ID": "integration-request-1"})
    assert response.headers["x-request-id"] == "integration-request-1"
    web_log = stack.processes["web"].log_path

    def logged() -> list[str]:
        lines = web_log.read_text().splitlines()
        return [line for line in lines if "request_id=integration-request-1" in line]

    lines = wait_until(logged, 5)
    assert lines is not None, stack.logs()
    [line] = lines
    assert " offload.http INFO request method=GET route=/healthz path=/healthz status=200 " in line
    assert not ACCESS_LINE.search(web_log.read_text()), stack.logs()


def test_json_logs_from_every_process_and_the_token(
    start_redis: StartRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stack's processes take the test's environment: JSON lines, /metrics behind a token.
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    server = start_redis(tmp_path / "redis")
    with running_stack(server.url, tmp_path / "logs") as stack:
        refused = stack.client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert scrape(stack, Authorization=f"Bearer {TOKEN}")["offload_redis_up"] == {(): 1}
        job_id = post(stack, "word_count", {"text": "a b c"})
        assert stack.wait_for_job(job_id, 30)["status"] == "finished", stack.logs()
        worker_log = stack.processes["worker"].log_path
        assert wait_until(lambda: "job ended" in worker_log.read_text(), 5), stack.logs()
    # Stopped: the shutdown lines are in too. Every line of both processes is one JSON object.
    logs = {name: (tmp_path / "logs" / f"{name}.log").read_text() for name in ("web", "worker")}
    records = {name: [json.loads(line) for line in text.splitlines() if line] for name, text in logs.items()}
    web, worker = records["web"], records["worker"]
    assert {"uvicorn.error", "offload.http"} <= {record["logger"] for record in web}
    assert {"rq.worker", "offload.job"} <= {record["logger"] for record in worker}
    ended = next(record for record in worker if record["message"] == "job ended")
    assert (ended["job_id"], ended["job"], ended["outcome"]) == (job_id, "word_count", "finished")
    assert all(TOKEN not in json.dumps(record) for record in web + worker)
