"""What one no-op job costs a worker, in counts that hold still on a noisy machine.

On the project's shared 2-core machine, jobs/s of the same tree moves by 10-15 % from one run to
the next: a change worth 5 % cannot be seen in it. The counts here move by a few percent. Per job:
the worker's CPU time (its whole process tree), its threads' context switches, and the CPU time of
redis-server, all read from Linux's /proc. For each worker setting, `--jobs` no-op jobs (the peer
table's `tick`: one RPUSH each, bench/peers/offload_jobs.py) are queued and one Procfile worker drains
them; the counts are taken from the `--skip`th job done to the last, so the worker's start is left out,
over the worker's processes as they are then (a pool's children recycled later are not followed).

    python -m bench.jobcost                          # simple, concurrent 16 and 50; 5,000 jobs each
    python -m bench.jobcost --jobs 3000 --setting "--kind concurrent --concurrency 16"
    python -m bench.jobcost --jobs 12000 --setting ceiling --setting "--kind concurrent --concurrency 16"
    python -m bench.jobcost --jobs 12000 --job tick_async --setting "ceiling --async" \
        --setting "--kind concurrent --concurrency 50"

To compare two trees, run it in each (a `git worktree`), alternating, and compare the counts. Context
switches are where a threaded worker's time goes (bench/PROFILES.md, "Context switches").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.peers import offload_jobs
from bench.peers.offload import SAME_PRIORITY
from bench.processes import running_workers
from service.catalog import RegisteredJob
from service.dev.harness import descendants, proc_stat, running_redis, wait_until
from service.store.enqueue import enqueue

# `--setting ceiling`: one thread taking, claiming, running and ending jobs in batches (bench/ceiling.py);
# `--setting "ceiling --async"` with `--job tick_async`: async jobs on that thread's event loop.
CEILING = "exec python -m bench.ceiling"
JOBS: dict[str, RegisteredJob[..., Any]] = {"tick": offload_jobs.tick, "tick_async": offload_jobs.tick_async}
SETTINGS = (
    "--kind simple",
    "--kind concurrent --concurrency 16",
    "--kind concurrent --concurrency 50",
)
BATCH = 1000
DRAIN_TIMEOUT = 600.0


@dataclass(frozen=True)
class Sample:
    """Counters of a set of processes at one moment."""

    at: float  # monotonic
    cpu: float  # seconds, user + system, of the worker's processes
    switches: int  # voluntary and involuntary context switches of all their threads
    redis_cpu: float  # seconds, of redis-server


@dataclass(frozen=True)
class Cost:
    setting: str
    jobs: int
    per_second: float
    cpu_ms: float
    switches: float
    redis_cpu_ms: float


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process (all its threads), 0 once it is gone."""
    stat = proc_stat(pid)
    return stat.cpu_seconds if stat is not None else 0.0


def context_switches(pid: int) -> int:
    """Context switches of every thread of one process so far (threads that ended are not counted)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            lines = status.read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return total


def sample(worker_pids: set[int], redis_pid: int) -> Sample:
    return Sample(
        time.monotonic(),
        sum(cpu_seconds(pid) for pid in worker_pids),
        sum(context_switches(pid) for pid in worker_pids),
        cpu_seconds(redis_pid),
    )


def measure(
    redis_url: str, redis_pid: int, logs: Path, setting: str, jobs: int, skip: int, job: str = "tick"
) -> Cost:
    connection = redis.Redis.from_url(redis_url, socket_timeout=30)
    try:
        connection.flushall()
        env = {"JOBS_MODULE": offload_jobs.__name__, **SAME_PRIORITY}
        ceiling = setting.split(maxsplit=1)[0] == "ceiling"
        program, args = (CEILING, setting.removeprefix("ceiling")) if ceiling else (None, setting)
        running = running_workers(logs, redis_url, args=args, name="jobcost", env=env, program=program)
        with running as [worker]:
            root = worker.popen.pid
            tick = JOBS[job]  # queued once the worker waits for work: its start is not counted
            for start in range(0, jobs, BATCH):
                enqueue(connection, tick, [tick.input_model()] * min(BATCH, jobs - start))

            def done_at_least(count: int) -> bool:
                if worker.popen.poll() is not None:
                    raise RuntimeError(f"the worker exited\n{worker.tail()}")
                return int(connection.llen(offload_jobs.DONE)) >= count

            if not wait_until(lambda: done_at_least(skip), DRAIN_TIMEOUT, interval=0.01):
                raise TimeoutError(
                    f"{setting}: {skip} jobs not done within {DRAIN_TIMEOUT:g} s\n{worker.tail()}"
                )
            pids = {root} | descendants(root)
            first, done_first = sample(pids, redis_pid), int(connection.llen(offload_jobs.DONE))
            if not wait_until(lambda: done_at_least(jobs), DRAIN_TIMEOUT, interval=0.02):
                raise TimeoutError(
                    f"{setting}: {jobs} jobs not done within {DRAIN_TIMEOUT:g} s\n{worker.tail()}"
                )
            last, done_last = sample(pids, redis_pid), int(connection.llen(offload_jobs.DONE))
    finally:
        connection.close()
    counted = done_last - done_first
    return Cost(
        setting,
        counted,
        counted / (last.at - first.at),
        (last.cpu - first.cpu) / counted * 1000,
        (last.switches - first.switches) / counted,
        (last.redis_cpu - first.redis_cpu) / counted * 1000,
    )


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    if process is None:
        raise RuntimeError("redis-server is not running")
    return process.pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jobcost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--skip", type=int, default=200, help="jobs done before counting starts")
    parser.add_argument(
        "--setting",
        action="append",
        help="worker arguments, or `ceiling [--async]` for bench/ceiling.py's one-thread loop (repeatable)",
    )
    parser.add_argument(
        "--job", choices=sorted(JOBS), default="tick", help="the no-op job every setting runs"
    )
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        parser.error("the counts come from Linux's /proc")
    if not 0 < args.skip < args.jobs:
        parser.error("--skip must be between 0 and --jobs")
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="offload-jobcost-") as scratch,
        running_redis(Path(scratch) / "redis") as server,
    ):
        redis_pid = _pid(server.process)
        for setting in args.setting or SETTINGS:
            rows.append(
                measure(server.url, redis_pid, Path(scratch), setting, args.jobs, args.skip, args.job)
            )
    print(
        "| worker setting | jobs counted | jobs/s (noisy) | worker CPU ms a job | context switches a job "
        "| redis-server CPU ms a job |\n|---|---:|---:|---:|---:|---:|"
    )
    for row in rows:
        print(
            f"| `{row.setting}` | {row.jobs:,} | {row.per_second:,.0f} | {row.cpu_ms:.3f} "
            f"| {row.switches:.1f} | {row.redis_cpu_ms:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
