"""The soak's workers: the Procfile's `worker` under names of the soak's, killed and replaced.

A worker kill is `SIGKILL` to its process group (the worker and its scheduler, as when a dyno dies;
the kernel then kills its work horse, service/worker/worker.py; a pool's children are in the group
too). A horse kill is `SIGKILL` to the work horse of a running job only: its worker sees it die and
fails the run (retried while retries last). A child kill is `SIGKILL` to one child of a pool while it
runs a job: the pool sees it die, makes its run lapse and sweeps it at once (service/worker/pool.py).
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import redis
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE
from rq.job import Job
from rq.utils import as_text, parse_composite_key
from rq.worker import BaseWorker
from rq.worker_registration import REDIS_WORKER_KEYS

from service.dev.harness import (
    LoggedProcess,
    descendants,
    proc_stat,
    procfile_commands,
    start_logged,
    wait_until,
)

# What each worker kind is killed with, in turn: a worker kill is SIGKILL to its process group; a
# horse kill SIGKILL to a forking worker's work horse; a child kill SIGKILL to one child of a pool;
# a term is SIGTERM to the process group (a restart, a deploy, a dyno's daily cycling): a warm
# shutdown, running jobs finish or go back.
KILL_KINDS = {
    "fork": ("worker", "horse"),
    "concurrent": ("worker", "term"),
    "pool": ("worker", "child", "term"),
}
# A concurrent soak worker: as many slots as a small dyno might run.
SOAK_CONCURRENCY = 8
# A soak pool (`--processes`): children of the simple kind, each running jobs one at a time.
POOL_CHILDREN = 2
ARGUMENTS = {
    "fork": "--kind fork",
    "concurrent": f"--kind concurrent --concurrency {SOAK_CONCURRENCY}",
    "pool": f"--kind simple --processes {POOL_CHILDREN}",
}
WORKER_START_TIMEOUT = 30.0
AIM_TIMEOUT = 3.0
TERM_TIMEOUT = 40.0  # a warm shutdown's grace period (WORKER_GRACE_SECONDS, 25 s), and some


class SoakError(RuntimeError):
    """The soak could not run as set up (not an invariant: those are in the report)."""


class Workers:
    """The Procfile's worker, started under names of our own, killed and replaced at random."""

    def __init__(
        self, connection: redis.Redis, env: dict[str, str], log_dir: Path, kind: str = "fork"
    ) -> None:
        self.connection, self.env, self.log_dir, self.kind = connection, env, log_dir, kind
        self.command = f"{procfile_commands()['worker']} {ARGUMENTS[kind]}"
        self.live: dict[str, LoggedProcess] = {}
        self.started = 0

    def start(self) -> str:
        self.started += 1
        name = f"soak-{self.started}"
        # A pool names each of its children itself (RQ's WorkerPool): `name` is the soak's only.
        command = self.command if self.kind == "pool" else f"{self.command} --name {name}"
        self.live[name] = start_logged(name, command, self.log_dir / f"{name}.log", self.env)
        return name

    def wait_ready(self, names: list[str]) -> None:
        def registered(name: str) -> bool:
            if self.kind == "pool":
                return len(self.children(name)) == POOL_CHILDREN
            return bool(self.connection.exists(f"rq:worker:{name}"))

        ready = wait_until(lambda: all(registered(n) for n in names), WORKER_START_TIMEOUT)
        if not ready:
            raise SoakError("workers did not register:\n" + "\n".join(self.live[n].tail() for n in names))

    def horse(self, name: str) -> int | None:
        """The work horse of a worker, if it runs a job: its child in a process group of its own."""
        pid = self.live[name].popen.pid
        try:  # the kernel's list of direct children: far cheaper than a walk of /proc
            children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:
            children = sorted(descendants(pid))
        for child in children:
            stat = proc_stat(child)
            if stat is not None and stat.pgrp == child and stat.state not in ("Z", "X"):
                return child
        return None

    def children(self, name: str) -> dict[int, str]:
        """A pool's live children that have registered as workers: their RQ worker names by pid."""
        pid = self.live[name].popen.pid
        try:
            pids = {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
        except FileNotFoundError:  # the pool is gone
            return {}
        keys = sorted(as_text(key) for key in self.connection.smembers(REDIS_WORKER_KEYS))
        with self.connection.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, "pid")
            found = pipe.execute()
        prefix = len(BaseWorker.redis_worker_namespace_prefix)
        return {int(p): key[prefix:] for key, p in zip(keys, found, strict=True) if p and int(p) in pids}

    def running(self, name: str) -> tuple[int, str] | None:
        """The process running a `started` job of the worker (a forking worker's horse, a pool's child,
        else the worker itself) and that job, else None."""
        if self.kind == "pool":
            candidates = list(self.children(name).items())
        else:
            process = self.horse(name) if self.kind == "fork" else self.live[name].popen.pid
            candidates = [(process, name)] if process is not None else []
        for process, worker in candidates:
            job_id = self.current_job(worker)
            if job_id is not None and self.job_status(job_id) == "started":
                return process, job_id
        return None

    def current_job(self, name: str) -> str | None:
        """A job the worker runs (or ran when it died), from the execution records RQ keeps for it."""
        keys = sorted(self.connection.smembers(WORKER_EXECUTIONS_KEY_TEMPLATE.format(name)))
        return parse_composite_key(as_text(keys[0]))[0] if keys else None

    def cut_off(self, workers: list[str]) -> str | None:
        """What the dead workers were running, a `started` job first (one left to RQ's sweep)."""
        jobs = [job for job in map(self.current_job, workers) if job is not None]
        return next((job for job in jobs if self.job_status(job) == "started"), jobs[0] if jobs else None)

    def kill(self, kind: str, rng: random.Random, at: float, aim: bool = False) -> Kill:
        """SIGKILL a worker at whatever it is doing, or the work horse of a running job, or the child of
        a pool that runs one; or SIGTERM a worker while it runs a job and wait for its warm shutdown.

        `aim`: kill the worker while its job is `started`, so that RQ has an abandoned job to find.
        """
        name = rng.choice(sorted(self.live))
        process = self.live[name]
        # Jobs last milliseconds: poll as fast, so that an aimed kill lands while one runs.
        aimed = kind in ("horse", "child", "term") or aim
        target = wait_until(lambda: self.running(name), AIM_TIMEOUT, 0.001) if aimed else None
        if kind == "term":
            os.killpg(process.popen.pid, signal.SIGTERM)  # as honcho and Heroku stop a dyno
            if process.popen.wait(TERM_TIMEOUT) != 0:
                raise SoakError(f"{name} exited {process.popen.returncode} on SIGTERM\n{process.tail()}")
            process.stop()
            del self.live[name]
            self.start()
            job_id = target[1] if target is not None else None
            return Kill(at, kind, name, job_id, self.job_status(job_id))
        if kind in ("horse", "child"):  # the pool replaces its child itself
            if target is None:
                return Kill(at, kind, name, None, None)
            pid, job_id = target
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended meanwhile: a miss
                return Kill(at, kind, name, None, None)
            return Kill(at, kind, name, job_id, None)
        workers = list(self.children(name).values()) if self.kind == "pool" else [name]
        os.killpg(process.popen.pid, signal.SIGKILL)  # the worker and its scheduler, as a dyno dies
        process.popen.wait(10)
        process.stop()  # reaps it, and kills what is left of its session (its horse died with it)
        del self.live[name]
        self.start()
        # Read once it is dead: its execution records say what it was running when it died.
        cut_off = self.cut_off(workers)
        return Kill(at, kind, name, cut_off, self.job_status(cut_off))

    def job_status(self, job_id: str | None) -> str | None:
        status = self.connection.hget(Job.key_for(job_id), "status") if job_id else None
        return as_text(status) if status is not None else None

    def stop_all(self) -> None:
        for process in self.live.values():
            process.stop()


@dataclass(frozen=True)
class Kill:
    at: float  # seconds since the first enqueue
    kind: str  # "worker" (its process group), "horse" (the work horse only), "child" (a pool's), "term"
    worker: str
    job_id: str | None  # what it was running, as its execution record in Redis said
    # A worker kill: the job's status once the worker was dead. `started`: abandoned, for RQ's
    # sweep to find; `queued`: cut off before its work horse marked it started.
    status_after: str | None

    @property
    def abandoned(self) -> bool:
        return self.status_after == "started"
