"""P4b: how fast a worker drains no-op jobs, offload's against raw RQ's, forking and simple.

For each class, N no-op jobs (bench/noop.py) are enqueued, then one worker runs in burst mode in a
fresh process until the queues are empty; the time is that of `work(burst=True)`, taken inside the
process (no interpreter start-up). Raw: `rq.Worker` / `rq.SimpleWorker` with the JSON serializer,
jobs from `Queue.enqueue_many`. offload: `build_worker(kind="fork" | "simple")` with a registry
holding the no-op, jobs from offload's enqueue path. Both listen to the same queues (offload's,
in priority order) and log at INFO. Raw and offload alternate over rounds; medians reported.

    python -m bench.drain --child raw|offload --kind fork|simple --redis URL --out FILE  (one run)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from rq import Queue, SimpleWorker, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from bench import noop
from bench.processes import Context
from bench.report import Better, Row, median
from service.dev.harness import child_env, running_redis, start_logged
from service.store.enqueue import enqueue
from service.store.layout import WORKER_QUEUES

QUEUE = "default"
BATCH = 1000
RUN_TIMEOUT = 300.0


def fill(connection: redis.Redis, flavour: str, count: int) -> None:
    """`count` no-op jobs on QUEUE, written the raw way or offload's way."""
    queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
    for start in range(0, count, BATCH):
        size = min(BATCH, count - start)
        if flavour == "raw":
            queue.enqueue_many([Queue.prepare_data(noop.noop, job_id=str(uuid.uuid4())) for _ in range(size)])
        else:
            enqueue(connection, noop.NOOP, [noop.NOOP.input_model()] * size)


def drain_once(
    ctx: Context,
    redis_url: str,
    flavour: str,
    kind: str,
    count: int,
    module: str = "bench.drain",
    fill_with: Callable[[redis.Redis, str, int], None] = fill,
) -> float:
    """Jobs per second one fresh worker process (`python -m module --child flavour ...`) drained
    `count` jobs (written by `fill_with`) at."""
    connection = redis.Redis.from_url(redis_url)
    name = module.rsplit(".", 1)[-1]
    try:
        connection.flushall()
        fill_with(connection, flavour, count)
        out = ctx.scratch / f"{name}-{uuid.uuid4().hex}.json"
        args = ["--child", flavour, "--kind", kind, "--redis", redis_url, "--out", str(out)]
        process = start_logged(
            f"{flavour}-{kind}",
            [sys.executable, "-m", module, *args],
            ctx.scratch / f"{name}-{flavour}-{kind}.log",
            child_env(),
        )
        try:
            process.popen.wait(RUN_TIMEOUT)
        finally:
            process.stop()
        if process.popen.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"{flavour} {kind} worker failed ({process.popen.returncode})\n{process.tail()}"
            )
        seconds: float = json.loads(out.read_text())["seconds"]
        finished = FinishedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
        failed = FailedJobRegistry(QUEUE, connection=connection, serializer=JSONSerializer)
        done, lost = finished.get_job_count(cleanup=False), failed.get_job_count(cleanup=False)
        if done != count or lost:
            raise RuntimeError(
                f"{flavour} {kind}: {done} of {count} jobs finished, {lost} failed\n{process.tail()}"
            )
        return count / seconds
    finally:
        connection.close()


Drain = Callable[[Context, str, str, str, int], float]  # (ctx, redis URL, flavour, kind, count): jobs/s


def drain_rounds(
    ctx: Context, rounds: int, counts: dict[str, int], flavours: Sequence[str], drain: Drain
) -> dict[tuple[str, str], list[float]]:
    """Each flavour's drain rate of each kind's `count` jobs, per round, in one redis-server; who
    goes first rotates from round to round, so no flavour gains from a warmer machine."""
    rates: dict[tuple[str, str], list[float]] = {}
    with (
        tempfile.TemporaryDirectory(dir=ctx.scratch) as scratch,
        running_redis(Path(scratch) / "redis") as server,
    ):
        for n in range(rounds):
            for kind, count in counts.items():
                shift = n % len(flavours)
                for flavour in [*flavours[shift:], *flavours[:shift]]:
                    rates.setdefault((flavour, kind), []).append(drain(ctx, server.url, flavour, kind, count))
    return rates


def p4b(ctx: Context) -> list[Row]:
    rounds = ctx.pick(3, 1)
    counts = {"fork": ctx.pick(500, 100), "simple": ctx.pick(2000, 300)}
    rates = drain_rounds(ctx, rounds, counts, ("raw", "offload"), drain_once)
    names = {
        "fork": ("rq.Worker", 'build_worker(kind="fork")'),
        "simple": ("rq.SimpleWorker", 'build_worker(kind="simple")'),
    }
    return [
        Row("P4b", f"no-op drain, {counts[kind]:,} jobs, {names[kind][1]}", median(rates["offload", kind]),
            median(rates["raw", kind]), f"raw {names[kind][0]}, same jobs", Better.HIGHER, round(1 / 1.1, 2),
            unit="jobs/s")
        for kind in counts
    ]  # fmt: skip


def child(flavour: str, kind: str, redis_url: str, out: Path) -> None:
    """One burst run in this process; writes the seconds `work(burst=True)` took to `out`."""
    connection = redis.Redis.from_url(redis_url)
    if flavour == "raw":
        queues = [Queue(q, connection=connection, serializer=JSONSerializer) for q in WORKER_QUEUES]
        worker_class = Worker if kind == "fork" else SimpleWorker
        worker: BaseWorker = worker_class(queues, connection=connection, serializer=JSONSerializer)
    else:
        from service.logs import configure_logging
        from service.worker.main import build_worker

        configure_logging("text", "INFO")  # as `python -m service.worker` does
        worker = build_worker(connection, kind=kind, registry=noop.registry)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="INFO")
    out.write_text(json.dumps({"seconds": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", choices=["raw", "offload"], required=True)
    parser.add_argument("--kind", choices=["fork", "simple"], required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    child(args.child, args.kind, args.redis, args.out)


if __name__ == "__main__":
    main()
