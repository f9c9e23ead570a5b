"""The seed's headline: how long `POST /jobs/very_long_task` takes next to the blocking endpoint.

    python -m bench.seed_latency [--calls 100] [--blocking-calls 3] [--seconds 5]

Starts a real redis-server and the Procfile's web and worker on loopback, plus the seed's blocking
app (bench/seed_app.py) under the same uvicorn, and times sequential calls from one keep-alive
client in this process. Ratios are against `GET /healthz` of the same web process, measured in
the same run, and against the blocking endpoint.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx2

from service.embedded_redis import free_port
from tests.integration.harness import (
    LOOPBACK,
    child_env,
    new_client,
    running_redis,
    running_stack,
    start_logged,
    wait_for_health,
)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(calls: int, call: Callable[[], httpx2.Response], expect: int) -> list[float]:
    """Milliseconds per call; every answer must have the expected status."""
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == expect, response.text
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--blocking-calls", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, running_redis(Path(scratch) / "redis") as redis:
        port = free_port()
        blocking = start_logged(
            "seed",
            f"exec uvicorn bench.seed_app:app --host {LOOPBACK} --port {port}",
            Path(scratch) / "seed.log",
            child_env(),
        )
        try:
            with (
                running_stack(redis.url, Path(scratch) / "logs") as stack,
                new_client(f"http://{LOOPBACK}:{port}") as seed,
            ):
                wait_for_health(seed, [blocking], 20, path="/docs")
                body = {"seconds": args.seconds}
                timed(10, lambda: stack.client.get("/healthz"), 200)  # warm up both paths
                timed(10, lambda: stack.client.post("/jobs/word_count", json={"text": "warm"}), 202)
                health = timed(args.calls, lambda: stack.client.get("/healthz"), 200)
                enqueue = timed(args.calls, lambda: stack.client.post("/jobs/very_long_task", json=body), 202)
                held = timed(
                    args.blocking_calls,
                    lambda: seed.post("/blocking/very_long_task", params=body, timeout=args.seconds + 30),
                    200,
                )
        finally:
            blocking.stop()

    rows = [
        ("GET /healthz (offload web)", health),
        (f"POST /jobs/very_long_task (offload, {args.seconds:g} s job)", enqueue),
        (f"POST /blocking/very_long_task (seed, {args.seconds:g} s in-request)", held),
    ]
    print(f"{'endpoint':<58} {'calls':>5} {'p50 ms':>9} {'p99 ms':>9}")
    for name, samples in rows:
        print(
            f"{name:<58} {len(samples):>5} {percentile(samples, 0.5):>9.1f} {percentile(samples, 0.99):>9.1f}"
        )
    print(
        f"offload enqueue p50 = {statistics.median(enqueue) / statistics.median(health):.2f}x healthz p50; "
        f"blocking p50 / offload enqueue p50 = {statistics.median(held) / statistics.median(enqueue):,.0f}x"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
