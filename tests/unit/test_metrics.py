"""GET /metrics: parsed with Prometheus' own parser, checked against the API's own counts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis.client
from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from service.catalog import load_catalog
from service.clock.clock import Lease
from service.connection import connect
from service.dev.redis_server import free_port
from service.settings import Settings
from service.store.layout import WORKER_QUEUES, job_key
from service.web.app import create_app
from service.web.metrics import OUTCOMES
from service.worker.main import build_worker
from service.worker.report import failure_outcome

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
TOKEN = "s3cret-metrics-token-0123456789"


def scrape(client: TestClient, **headers: str) -> Samples:
    """Every sample of a scrape, by name and sorted labels, as the official parser reads them."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def series(samples: Samples, name: str) -> dict[tuple[str, ...], float]:
    """One metric's samples by their label values (in label-name order)."""
    return {tuple(v for _, v in labels): value for (n, labels), value in samples.items() if n == name}


def post(client: TestClient, name: str, body: Any = None, **params: Any) -> str:
    response = client.post(f"/jobs/{name}", json=body if body is not None else {}, params=params)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_job_counts_match_get_queues(client: TestClient, run_jobs: Callable[[], None]) -> None:
    post(client, "word_count", {"text": "a"})
    post(client, "always_fails", retries=0)
    run_jobs()
    waiting_for = post(client, "word_count", {"text": "b"})
    post(client, "word_count", {"text": "c"}, delay=60)
    post(client, "word_count", {"text": "d"}, depends_on=waiting_for)
    post(client, "count_primes", {"limit": 10}, queue="high")
    canceled = post(client, "count_primes", {"limit": 10})
    assert client.post(f"/jobs/{canceled}/cancel").status_code == 200
    queues = {q["name"]: q["counts"] for q in client.get("/queues").json()}
    # Labels sort as (queue, status).
    gauges = series(scrape(client), "offload_jobs")
    assert gauges == {(queue, status): n for queue, counts in queues.items() for status, n in counts.items()}
    assert gauges[("default", "finished")] == gauges[("default", "failed")] == 1
    assert gauges[("high", "queued")] == gauges[("low", "canceled")] == 1


def test_workers_by_state_match_get_workers(client: TestClient, connection: Redis) -> None:
    assert set(series(scrape(client), "offload_workers").values()) == {0}
    idle: Any = build_worker(connection, kind="simple", name="idle-one")  # rq leaves these untyped
    busy: Any = build_worker(connection, kind="simple", name="busy-one")
    gone: Any = build_worker(connection, kind="simple", name="gone-one")
    for worker in (idle, busy, gone):
        worker.register_birth()
    idle.set_state("idle")
    busy.set_state("busy")
    connection.delete(gone.key)  # its record expired: it died without registering its death
    try:
        states = series(scrape(client), "offload_workers")
        listed = [worker["state"] for worker in client.get("/workers").json()]
    finally:
        idle.register_death()
        busy.register_death()
    assert sorted(listed) == ["busy", "idle"]
    assert states == {("busy",): 1, ("idle",): 1, ("started",): 0, ("suspended",): 0}


def test_the_oldest_job_age_is_the_wait_of_each_queues_head(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    assert series(scrape(client), "offload_queue_oldest_job_age_seconds") == {
        (queue,): 0 for queue in WORKER_QUEUES
    }
    head = post(client, "word_count", {"text": "a"})
    post(client, "word_count", {"text": "b"})  # behind it: not the one that has waited longest
    connection.hset(job_key(head), "enqueued_at", utcformat(now() - timedelta(seconds=120)))
    post(client, "count_primes", {"limit": 10}, queue="high")
    gone = post(client, "word_count", {"text": "c"}, queue="low")
    connection.delete(job_key(gone))  # its record expired: a worker drops it unrun
    before = time.time()
    ages = series(scrape(client), "offload_queue_oldest_job_age_seconds")
    waited = time.time() - before
    assert 120 <= ages[("default",)] < 120 + waited + 1
    assert 0 < ages[("high",)] < waited + 1
    assert ages[("low",)] == ages[("webhooks",)] == 0
    run_jobs()
    assert set(series(scrape(client), "offload_queue_oldest_job_age_seconds").values()) == {0}


def test_the_clocks_last_tick_is_the_leaders_last_renewal(client: TestClient, connection: Redis) -> None:
    assert scrape(client)[("offload_clock_last_tick_timestamp_seconds", ())] == 0  # never a clock
    lease = Lease(connection, "clock-1", 30)
    assert lease.acquire()
    before = time.time()
    assert lease.renew()  # what the leading clock does every round
    ticked = scrape(client)[("offload_clock_last_tick_timestamp_seconds", ())]
    assert before - 0.001 <= ticked <= time.time()
    lease.release()  # a stopped clock: its last tick stays, growing older
    assert scrape(client)[("offload_clock_last_tick_timestamp_seconds", ())] == ticked


def test_job_counters_move_on_enqueue_finish_fail_and_retry(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    before = scrape(client)
    # Every registered job has its series from the start, at 0, so a first increase shows.
    assert series(before, "offload_jobs_enqueued_total") == {(name,): 0 for name in load_catalog().names()}
    assert series(before, "offload_job_runs_total") == {
        (name, outcome): 0 for name in load_catalog().names() for outcome in OUTCOMES
    }
    post(client, "word_count", {"text": "a"})
    assert client.post("/jobs/word_count/batch", json=[{"text": "b"}, {"text": "c"}]).status_code == 202
    word_count = load_catalog().get("word_count")
    assert word_count is not None
    word_count.enqueue(connection, text="from Python")  # the same enqueue path, the same counter
    post(client, "always_fails", retries=0)
    post(client, "always_fails", retries=1)  # fails, is scheduled again: one retried run
    run_jobs()
    after = scrape(client)
    assert series(after, "offload_jobs_enqueued_total")[("word_count",)] == 4
    assert series(after, "offload_jobs_enqueued_total")[("always_fails",)] == 2
    runs = series(after, "offload_job_runs_total")
    assert runs[("word_count", "finished")] == 4
    assert runs[("always_fails", "failed")] == 1
    assert runs[("always_fails", "retried")] == 1
    assert runs[("always_fails", "finished")] == runs[("word_count", "failed")] == 0


def test_counters_are_the_deployments_not_one_processes(
    client: TestClient, make_client: Callable[..., TestClient]
) -> None:
    other = make_client()  # a second web process on the same Redis
    post(other, "word_count", {"text": "a"})
    post(client, "word_count", {"text": "b"})
    for web in (client, other):
        assert series(scrape(web), "offload_jobs_enqueued_total")[("word_count",)] == 2


def test_an_idempotent_replay_is_not_counted_again(client: TestClient) -> None:
    for _ in range(3):
        response = client.post("/jobs/word_count", json={"text": "a"}, headers={"Idempotency-Key": "k-1"})
        assert response.status_code == 202
    assert series(scrape(client), "offload_jobs_enqueued_total")[("word_count",)] == 1


def test_a_refused_job_is_counted_as_unregistered(
    client: TestClient, connection: Redis, run_jobs: Callable[[], None]
) -> None:
    from rq import Queue

    Queue("default", connection=connection, serializer=JSONSerializer).enqueue("os.getcwd")
    run_jobs()
    assert series(scrape(client), "offload_job_runs_total")[("(unregistered)", "failed")] == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(JobStatus.STOPPED, "stopped"), (JobStatus.FAILED, "failed"), (JobStatus.SCHEDULED, "retried")],
)
def test_a_failed_run_is_named_by_the_status_rq_left(
    connection: Redis, status: JobStatus, outcome: str
) -> None:
    job = Job.create("jobs.examples.word_count", connection=connection, serializer=JSONSerializer)
    job.set_status(status)
    assert failure_outcome(job) == outcome


def test_http_requests_are_counted_by_route_template(client: TestClient) -> None:
    first, second = post(client, "word_count", {"text": "a"}), post(client, "word_count", {"text": "b"})
    for job_id in (first, second, "no-such-job"):
        client.get(f"/jobs/{job_id}")
    client.get("/no/such/path")
    client.get("/no/such/path/either")
    samples = scrape(client)
    # Labels sort as (method, route, status).
    requests = series(samples, "offload_http_requests_total")
    assert requests[("GET", "/jobs/{job_id}", "200")] == 2
    assert requests[("GET", "/jobs/{job_id}", "404")] == 1
    assert requests[("POST", "/jobs/word_count", "202")] == 2
    assert requests[("GET", "unmatched", "404")] == 2
    assert not any(first in route or "no/such" in route for _, route, _ in requests)
    # Histogram labels sort as (method, route) and, for buckets, le.
    assert series(samples, "offload_http_request_duration_seconds_count")[("GET", "/jobs/{job_id}")] == 3
    buckets = series(samples, "offload_http_request_duration_seconds_bucket")
    assert buckets[("+Inf", "GET", "/jobs/{job_id}")] == 3


def test_starlette_routes_and_mounts_are_labelled_by_template_too(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(
        dashboard_username=SecretStr("admin"), dashboard_password=SecretStr("a-long-password-1")
    )
    client.get("/docs")
    for path in ("/dashboard/", "/dashboard/0/view/jobs", f"/dashboard/0/view/job/{'x' * 36}"):
        client.get(path)  # without credentials: 401
    requests = series(scrape(client), "offload_http_requests_total")
    assert requests[("GET", "/docs", "200")] == 1
    assert requests[("GET", "/dashboard/{path}", "401")] == 3


def test_a_413_from_the_body_limit_is_counted(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=1024)
    response = client.post(
        "/jobs/word_count", content=b"x" * 2048, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    # Refused by its Content-Length before any route was matched.
    assert series(scrape(client), "offload_http_requests_total")[("POST", "unmatched", "413")] == 1


def test_the_token_is_asked_for_when_set(make_client: Callable[..., TestClient]) -> None:
    client = make_client(metrics_token=SecretStr(TOKEN))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "METRICS_TOKEN" in response.json()["detail"]
    assert scrape(client, Authorization=f"Bearer {TOKEN}")
    assert client.get("/healthz").status_code == 200  # only /metrics asks for it


def test_metrics_are_open_without_a_token(client: TestClient) -> None:
    assert scrape(client)[("offload_redis_up", ())] == 1


def test_a_short_token_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(redis_url="redis://localhost", metrics_token=SecretStr("short"))


def test_openmetrics_is_served_when_asked_for(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    names = {family.name for family in openmetrics_families(response.text)}  # type: ignore[no-untyped-call]
    assert {"offload_jobs", "offload_jobs_enqueued", "offload_http_requests"} <= names


@pytest.fixture
def down_client(settings: Settings) -> Iterator[TestClient]:
    """The app pointed at a loopback port where no Redis listens."""
    down = connect(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}))
    with TestClient(create_app(settings, down)) as test_client:
        yield test_client
    down.close()


def test_without_redis_the_scrape_keeps_the_process_metrics(down_client: TestClient) -> None:
    down_client.get("/healthz")
    samples = scrape(down_client)
    assert samples[("offload_redis_up", ())] == 0
    names = {name for name, _ in samples}
    # Left out rather than zeros: a counter at 0 would read as a reset.
    assert not names & {
        "offload_jobs",
        "offload_workers",
        "offload_jobs_enqueued_total",
        "offload_queue_oldest_job_age_seconds",
        "offload_clock_last_tick_timestamp_seconds",
    }
    assert series(samples, "offload_http_requests_total")[("GET", "/healthz", "200")] == 1


@pytest.fixture
def redis_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every command sent to Redis, single or pipelined, from now on."""
    sent: list[str] = []
    single, pipelined = redis.client.Redis.execute_command, redis.client.Pipeline._execute_pipeline

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return single(self, *args, **options)  # type: ignore[no-untyped-call]

    def execute_pipeline(self: Any, connection: Any, commands: Any, raise_on_error: Any) -> Any:
        sent.extend(str(args[0]).upper() for args, _ in commands)
        return pipelined(self, connection, commands, raise_on_error)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(redis.client.Redis, "execute_command", execute_command)
    monkeypatch.setattr(redis.client.Pipeline, "_execute_pipeline", execute_pipeline)
    return sent


def test_a_scrape_costs_the_same_whatever_the_number_of_jobs(
    client: TestClient, run_jobs: Callable[[], None], redis_commands: list[str]
) -> None:
    def commands_of_a_scrape() -> list[str]:
        redis_commands.clear()
        scrape(client)
        return sorted(redis_commands)

    post(client, "word_count", {"text": "a"})
    few = commands_of_a_scrape()
    assert client.post("/jobs/word_count/batch", json=[{"text": "a"}] * 300).status_code == 202
    run_jobs()
    # As many non-empty queues as before: one HGET per queue's head, however long the queue.
    assert client.post("/jobs/word_count/batch", json=[{"text": "a"}] * 300).status_code == 202
    assert commands_of_a_scrape() == few
    assert set(few) <= {"LLEN", "LINDEX", "ZCARD", "ZCOUNT", "SMEMBERS", "HGETALL", "HGET", "GET"}
