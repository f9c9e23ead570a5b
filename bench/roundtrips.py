"""Round trips to Redis a worker makes per job, by kind: what issue 12 asked to cut where it limits
throughput (on a small machine a round trip costs a worker more CPU than the commands it carries).

    python -m bench.roundtrips                 # 1,000 no-op jobs per kind
    python -m bench.roundtrips --jobs 200

Each kind's worker (`build_worker`, as the Procfile's builds it) burst-drains the same no-op jobs
from a real redis-server, in this process; every command or pipeline the worker's client sends is
one round trip. RQ's own `SimpleWorker` on the same jobs is the baseline. Counted, not timed: the
figure does not depend on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from redis.connection import AbstractConnection
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from bench import noop
from service.dev.harness import running_redis
from service.store.enqueue import enqueue
from service.worker.concurrent import ConcurrentWorker
from service.worker.main import build_worker

KINDS = {"simple": 1, "concurrent 10": 10, "concurrent 50": 50}


@contextmanager
def counting() -> Iterator[list[int]]:
    """Every packed command or pipeline sent by any redis-py connection of this process, counted."""
    sent = [0]
    original: Any = AbstractConnection.send_packed_command

    def send(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sent[0] += 1
        original(self, *args, **kwargs)

    AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


def per_job(
    url: str, jobs: int, fill: Callable[[redis.Redis], None], worker: Callable[[redis.Redis], BaseWorker]
) -> float:
    connection = redis.Redis.from_url(url)
    try:
        connection.flushall()
        fill(connection)
        running = worker(redis.Redis.from_url(url))
        with counting() as sent:
            running.work(burst=True, with_scheduler=False, logging_level="WARNING")
        return sent[0] / jobs
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrips", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1000)
    jobs = parser.parse_args(argv).jobs

    def offload_jobs(connection: redis.Redis) -> None:
        enqueue(connection, noop.NOOP, [noop.NOOP.input_model()] * jobs)

    def raw_jobs(connection: redis.Redis) -> None:
        queue = Queue("default", connection=connection, serializer=JSONSerializer)
        queue.enqueue_many([Queue.prepare_data(noop.noop, job_id=str(uuid.uuid4())) for _ in range(jobs)])

    def kind(slots: int) -> Callable[[redis.Redis], BaseWorker]:
        def make(connection: redis.Redis) -> BaseWorker:
            worker = build_worker(
                connection, kind="simple" if slots == 1 else "concurrent", registry=noop.registry
            )
            if isinstance(worker, ConcurrentWorker):
                worker.concurrency = slots
            return worker

        return make

    def raw(connection: redis.Redis) -> BaseWorker:
        return SimpleWorker(["default"], connection=connection, serializer=JSONSerializer)

    with (
        tempfile.TemporaryDirectory(prefix="offload-roundtrips-") as scratch,
        running_redis(Path(scratch) / "redis") as server,
    ):
        rows = [("RQ's SimpleWorker (baseline)", per_job(server.url, jobs, raw_jobs, raw))]
        rows += [
            (f"offload {name}", per_job(server.url, jobs, offload_jobs, kind(slots)))
            for name, slots in KINDS.items()
        ]
    print(f"| worker | round trips a job ({jobs:,} no-op jobs) |\n|---|---:|")
    for label, figure in rows:
        print(f"| {label} | {figure:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
