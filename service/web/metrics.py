"""Prometheus metrics for `GET /metrics`, with the official client library (prometheus_client).

Two kinds, told apart by where they live:

- **Cluster-wide, read from Redis at each scrape**: jobs per queue per status (`held` included),
  paused queues, the age of the job at each queue's head, workers per state, jobs enqueued, runs
  ended and jobs waiting for a concurrency slot per job name, the clock's last tick. Any web process
  answers with the same figures. A scrape costs at most five round trips: (1) per queue its
  registries' sizes (LLEN, ZCARD, ZCOUNT: O(1) or O(log n)) and its head's id (LINDEX 0, O(1)), the
  paused set and the held counts; (2) the workers' set, one hash
  of counters (a handful of entries each), the clock's tick (GET) and, per non-empty queue, its
  head's `enqueued_at` (HGET); (3) each worker's state (HGET); (4) RQ's concurrency-cap keys in use
  (SMEMBERS) and (5) the jobs waiting in each (ZCARD). Never a scan: the number of commands grows
  with the number of queues (4), of workers and of cap keys with waiting jobs, never with the number
  of jobs.
- **This process's own**: HTTP requests and their latency by route template, process and GC
  figures. With several web processes, each counts its own requests.

The job counters are hash fields that the enqueue transaction and the workers HINCRBY
(service/store/enqueue.py `count_event`): counts kept in a web process would only see that process's
enqueues, and no web process sees a job end. They are as durable as Redis; a Redis that lost them
looks to Prometheus like a counter reset, which `rate()` and `increase()` handle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from rq.utils import as_text, str_to_date
from rq.worker import WorkerStatus
from rq.worker_registration import REDIS_WORKER_KEYS

from service.store.counts import Overview, queue_overview, waiting_for_slots
from service.store.layout import CLOCK_TICK_KEY, COUNTERS_KEY, job_key

log = logging.getLogger(__name__)

# How a run of a job ended, as the worker counts it (service/worker/report.py, service/worker/shutdown.py).
# `retried`: it failed and will run again; `interrupted`: its worker stopped and put it back on its
# queue, a retry unspent; `failed` and `stopped` are final; `expired`: not started within its ttl,
# canceled unrun (service/store/expiry.py), so no run at all; `retry_after`: the job asked to run
# again later (service/flow.py), a retry unspent.
OUTCOMES = ("finished", "failed", "stopped", "retried", "interrupted", "expired", "retry_after")
WORKER_STATES = tuple(state.value for state in WorkerStatus)
# Seconds. Beyond the library's defaults: `?wait=` requests last up to 25 s, event streams minutes.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# The route label of a request that matched no route (404s): one label for any number of paths.
UNMATCHED = "unmatched"


class Metrics:
    """One app's metrics, in a registry of its own: two apps in one process never share counts."""

    def __init__(self, job_names: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.job_names = tuple(job_names)
        self.http_requests = Counter(
            "offload_http_requests",
            "HTTP requests this web process answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "offload_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def render(self, connection: Redis, accept: str = "") -> tuple[bytes, str]:
        """The scrape's body and content type (Prometheus text, or OpenMetrics when asked for)."""
        encode, content_type = choose_encoder(accept)
        return encode(_Scrape(self.registry, RedisCollector(connection, self.job_names))), content_type


class _Scrape:
    """This process's registry and the Redis-backed families, exposed as one collection."""

    def __init__(self, *collectors: Collector) -> None:
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


class RedisCollector:
    """The cluster-wide families, read from Redis when collected: a fixed number of commands."""

    def __init__(self, connection: Redis, job_names: Iterable[str]) -> None:
        self.connection = connection
        # Registered jobs get every series from the start (at 0), so a first increase shows.
        self.job_names = tuple(job_names)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "offload_redis_up",
            "1 when this scrape read Redis; 0 when Redis did not answer, and the job, worker and "
            "counter families are then left out rather than shown as zeros.",
        )
        try:
            families = self._read()
        except RedisError as exc:
            # Redis' message names host and port, never the password.
            log.warning("metrics without Redis' figures, Redis is unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> list[Metric]:
        overview = queue_overview(self.connection)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.smembers(REDIS_WORKER_KEYS)
            pipe.hgetall(COUNTERS_KEY)
            pipe.get(CLOCK_TICK_KEY)
            for head in overview.heads.values():
                pipe.hget(job_key(head), "enqueued_at")  # RQ's: set at each (re)enqueue
            worker_keys, counters, ticked, *enqueued_at = pipe.execute()
        now = time.time()
        states: list[Any] = []
        if worker_keys:
            with self.connection.pipeline(transaction=False) as pipe:
                for key in worker_keys:
                    pipe.hget(key, "state")
                states = pipe.execute()
        return [
            _jobs(overview.counts),
            _paused(overview.counts, overview.paused),
            _oldest(overview, dict(zip(overview.heads, enqueued_at, strict=True)), now),
            _workers(states),
            _waiting(waiting_for_slots(self.connection), self.job_names),
            _clock(ticked),
            *_counters(counters, self.job_names),
        ]


def _jobs(counts: dict[str, dict[str, int]]) -> Metric:
    family = GaugeMetricFamily(
        "offload_jobs",
        "Jobs in each queue by status, from RQ's registries (as GET /queues shows them).",
        labels=["queue", "status"],
    )
    for queue, by_status in counts.items():
        for status, count in by_status.items():
            family.add_metric([queue, status], count)
    return family


def _paused(counts: dict[str, dict[str, int]], paused: frozenset[str]) -> Metric:
    family = GaugeMetricFamily(
        "offload_queue_paused",
        "1 for a paused queue (it accepts jobs, workers take none), 0 otherwise (POST /queues/{name}/pause).",
        labels=["queue"],
    )
    for queue in counts:
        family.add_metric([queue], 1 if queue in paused else 0)
    return family


def _oldest(overview: Overview, enqueued_at: dict[str, Any], now: float) -> Metric:
    family = GaugeMetricFamily(
        "offload_queue_oldest_job_age_seconds",
        "Seconds since the job at the head of the queue (the next a worker takes, the oldest unless "
        "one was enqueued at_front) was enqueued; 0 for an empty queue.",
        labels=["queue"],
    )
    for queue in overview.counts:
        stamp = enqueued_at.get(queue)
        # No stamp: an empty queue, or a head whose record is gone (a worker drops it unrun).
        age = max(0.0, now - str_to_date(stamp).timestamp()) if stamp else 0.0
        family.add_metric([queue], age)
    return family


def _clock(ticked: Any) -> Metric:
    family = GaugeMetricFamily(
        "offload_clock_last_tick_timestamp_seconds",
        "When the clock holding the lease last ran a round (Unix seconds; it runs one every 10 s "
        "at most); 0 if no clock ever did.",
    )
    family.add_metric([], float(ticked) if ticked is not None else 0.0)
    return family


def _waiting(waiting: dict[str, int], job_names: tuple[str, ...]) -> Metric:
    family = GaugeMetricFamily(
        "offload_jobs_rate_limited",
        "Jobs waiting for a slot of their concurrency cap (status rate_limited), by job name.",
        labels=["job"],
    )
    for name, count in sorted({**dict.fromkeys(job_names, 0), **waiting}.items()):
        family.add_metric([name], count)
    return family


def _workers(states: list[Any]) -> Metric:
    family = GaugeMetricFamily(
        "offload_workers", "Workers alive (registered, record not expired) by state.", labels=["state"]
    )
    by_state = dict.fromkeys(WORKER_STATES, 0)
    for state in states:
        if state is not None:  # a worker whose record expired: it died without saying so
            by_state[as_text(state)] = by_state.get(as_text(state), 0) + 1
    for state, count in by_state.items():
        family.add_metric([state], count)
    return family


def _counters(fields: dict[Any, Any], job_names: tuple[str, ...]) -> list[Metric]:
    enqueued = CounterMetricFamily(
        "offload_jobs_enqueued",
        "Jobs enqueued, by job name, by every process of the deployment (kept in Redis).",
        labels=["job"],
    )
    runs = CounterMetricFamily(
        "offload_job_runs",
        "Runs of jobs that ended, by job name and outcome (finished, failed, stopped, retried, "
        "interrupted; expired: canceled unrun, past its ttl; retry_after: asked to run again later), "
        "in every process of the deployment (kept in Redis).",
        labels=["job", "outcome"],
    )
    values = {(name, event): 0 for name in job_names for event in ("enqueued", *OUTCOMES)}
    for field, value in fields.items():
        name, _, event = as_text(field).rpartition(":")
        values[(name, event)] = int(value)
    for (name, event), value in sorted(values.items()):
        if event == "enqueued":
            enqueued.add_metric([name], value)
        elif event in OUTCOMES:
            runs.add_metric([name, event], value)
    return [enqueued, runs]
