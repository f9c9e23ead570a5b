"""offload's rows: its web and its worker kinds, run as the Procfile runs them, from this checkout.

WORKERS is the list of offload worker configurations the table has a row for. Each is the
Procfile's `worker` command with arguments (`python -m service.worker --kind …`, which builds its
worker with `build_worker(kind=…)`), so a new kind is one more entry here, e.g.
`WorkerSetting("offload threads 16", ("--kind", "threads", "--concurrency", "16"), slots=16)`.
"""

from __future__ import annotations

import platform
import shlex
from importlib.metadata import version
from pathlib import Path
from typing import Any

import redis

from bench.peers.system import WorkerSetting
from service.catalog import RegisteredJob
from service.dev.harness import child_env, procfile_commands
from service.store.enqueue import enqueue

JOBS_MODULE = "bench.peers.offload_jobs"
BATCH = 1000
# The peers run at the machine's default priority; offload's fork worker would nice itself to 19
# and its jobs to SCHED_IDLE (settings WORKER_NICE, JOB_IDLE_PRIORITY), which on a machine shared
# with other work measures the neighbours, not offload.
SAME_PRIORITY = {"WORKER_NICE": "0", "JOB_IDLE_PRIORITY": "false"}

WORKERS = (
    WorkerSetting("offload fork", ("--kind", "fork"), slots=1, drain_cap=500),
    WorkerSetting("offload simple", ("--kind", "simple"), slots=1),
    # As Celery prefork -c 2: the pool's children run the jobs, in-process, many each.
    WorkerSetting("offload pool 2", ("--kind", "simple", "--processes", "2"), slots=2,
                  note="a parent and two child processes"),
    # As SAQ, arq and taskiq: one process, many jobs at once; (b) with `async def` jobs.
    WorkerSetting("offload concurrent 50, async jobs", ("--kind", "concurrent", "--concurrency", "50"),
                  slots=50, io_job="io_wait_async"),
    # As Celery and Dramatiq threads: (b) with plain (sync) jobs, one thread each.
    WorkerSetting("offload concurrent 16, sync jobs", ("--kind", "concurrent", "--concurrency", "16"),
                  slots=16),
    # As Dramatiq's processes and threads: the pool's children, each a concurrent worker.
    WorkerSetting("offload pool 2, concurrent 16 each",
                  ("--kind", "concurrent", "--processes", "2", "--concurrency", "16"),
                  slots=32, note="a parent and two child processes"),
)  # fmt: skip


class Offload:
    """offload as a system under test (bench/peers/system.py's `System`)."""

    @property
    def name(self) -> str:
        return "offload"

    @property
    def workers(self) -> tuple[WorkerSetting, ...]:
        return WORKERS

    def prepare(self) -> str:
        return f"offload (this checkout), rq {version('rq')}, redis {version('redis')}, " \
               f"Python {platform.python_version()}"  # fmt: skip

    def env(self) -> dict[str, str]:
        return child_env(JOBS_MODULE=JOBS_MODULE, **SAME_PRIORITY)

    def enqueue(self, redis_url: str, job: str, count: int, seconds: float, log: Path) -> None:
        """Through offload's enqueue path (what `POST /jobs/{name}/batch` runs), in batches."""
        # Imported here, not at the top: importing registers the jobs in the process's catalogue,
        # which only this driver's process (and the web and worker it starts) should have them in.
        from bench.peers import offload_jobs

        jobs: dict[str, RegisteredJob[..., Any]] = {
            "tick": offload_jobs.tick,
            "io_wait": offload_jobs.io_wait,
            "io_wait_async": offload_jobs.io_wait_async,
            "stamp": offload_jobs.stamp,
        }
        connection = redis.Redis.from_url(redis_url)
        try:
            enqueue(connection, jobs["tick"], [jobs["tick"].input_model()])
            registered = jobs[job]
            waits = job.startswith("io_wait")
            model = registered.input_model(seconds=seconds) if waits else registered.input_model()
            for start in range(0, count, BATCH):
                enqueue(connection, registered, [model] * min(BATCH, count - start))
        finally:
            connection.close()

    def worker_command(self, setting: WorkerSetting) -> tuple[str | list[str], dict[str, str]]:
        command = f"{procfile_commands()['worker']} {shlex.join(setting.command)}"
        return command, {**self.env(), **dict(setting.env)}

    def web(self) -> tuple[str, dict[str, str]]:
        return "service.web.app:create_app --factory", self.env()
