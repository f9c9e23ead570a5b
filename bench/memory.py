"""Issue 12's memory figure: one concurrent worker holding 200 waiting jobs, beside the forking
workers it replaces (one job each: 200 of them for 200 jobs).

    python -m bench.memory                      # 200 jobs; the forking side sampled on 10 workers
    python -m bench.memory --jobs 50 --fork-sample 4

The concurrent side is one Procfile worker (`--kind concurrent --concurrency N`) running N jobs
that each wait 60 s, once as sync jobs (a thread each) and once as `async def` jobs (one event loop).
The forking side is `--fork-sample` Procfile workers (`--kind fork`), each running one such job in
its work horse; their memory per job, times N, is what N of them would take. Memory is each process
tree's proportional set size (PSS: a page shared by k processes counts 1/k in each, so sums are
real), read from /proc once every job has started; RSS beside it. Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.peers import offload_jobs
from bench.processes import running_workers
from service.catalog import RegisteredJob
from service.dev.harness import LoggedProcess, descendants, running_redis, wait_until
from service.store.enqueue import enqueue

WAIT_SECONDS = 60.0  # each job's wait: longer than the measurement
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Memory:
    pss_mb: float
    rss_mb: float
    processes: int


def tree_memory(processes: list[LoggedProcess]) -> Memory:
    """PSS and RSS of the processes and everything below them (work horses, schedulers), in MB."""
    pids = set()
    for process in processes:
        pids |= {process.popen.pid} | descendants(process.popen.pid)
    pss = rss = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = {line.split(":")[0]: line.split()[1] for line in lines[1:] if ":" in line}
        pss += int(fields.get("Pss", 0))
        rss += int(fields.get("Rss", 0))
    return Memory(pss / 1024, rss / 1024, len(pids))


def measure(
    redis_url: str, logs: Path, workers: int, args: str, job: RegisteredJob[..., Any], count: int
) -> Memory:
    """Memory of `workers` Procfile workers (`args`) once `count` jobs of `job` run on them."""
    connection = redis.Redis.from_url(redis_url)
    try:
        connection.flushall()
        env = {"JOBS_MODULE": offload_jobs.__name__}
        with running_workers(logs, redis_url, workers, args, env=env) as started:
            enqueue(connection, job, [job.input_model(seconds=WAIT_SECONDS)] * count)
            running = wait_until(lambda: connection.zcard("rq:wip:default") >= count, START_TIMEOUT)
            if not running:
                raise RuntimeError(f"{count} jobs did not start within {START_TIMEOUT:g} s ({args})")
            return tree_memory(started)
    finally:
        connection.flushall()
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--jobs", type=int, default=200, help="jobs the concurrent worker holds at once")
    parser.add_argument("--fork-sample", type=int, default=10, help="forking workers actually started")
    args = parser.parse_args(argv)
    jobs, sample = args.jobs, args.fork_sample
    with (
        tempfile.TemporaryDirectory(prefix="offload-memory-") as scratch,
        running_redis(Path(scratch) / "redis") as server,
    ):
        logs = Path(scratch)
        concurrent = f"--kind concurrent --concurrency {jobs}"
        sync = measure(server.url, logs, 1, concurrent, offload_jobs.io_wait, jobs)
        asynchronous = measure(server.url, logs, 1, concurrent, offload_jobs.io_wait_async, jobs)
        fork = measure(server.url, logs, sample, "--kind fork", offload_jobs.io_wait, sample)
    per_fork = Memory(fork.pss_mb / sample, fork.rss_mb / sample, fork.processes // sample)
    rows = [
        (f"1 concurrent worker, {jobs} sync jobs waiting (a thread each)", sync),
        (f"1 concurrent worker, {jobs} async jobs waiting (one event loop)", asynchronous),
        (f"{jobs} forking workers, one job each (measured on {sample}, times {jobs / sample:g})",
         Memory(per_fork.pss_mb * jobs, per_fork.rss_mb * jobs, per_fork.processes * jobs)),
    ]  # fmt: skip
    print("| worker | processes | PSS | RSS (sum) |\n|---|---:|---:|---:|")
    for label, memory in rows:
        print(f"| {label} | {memory.processes:,} | {memory.pss_mb:,.0f} MB | {memory.rss_mb:,.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
