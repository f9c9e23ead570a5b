"""One soak: the stack started, the jobs enqueued while workers are killed, the books kept."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import redis

from bench.soak.accounting import (
    Accounting,
    Submitted,
    account,
    backlog,
    held_back,
    in_flight,
    slots_held,
    statuses,
)
from bench.soak.jobs import JOBS_MODULE, LIMITED_KEYS
from bench.soak.workers import KILL_KINDS, Kill, SoakError, Workers
from service.dev.harness import child_env, running_redis, running_stack, wait_until
from service.store.layout import QUEUES, TERMINAL

JOB = "soak_step"
# Every LIMITED_EVERY-th batch is of this job instead, spread over LIMITED_KEYS keys.
LIMITED_JOB = "soak_limited"
LIMITED_EVERY = 4
POST_ATTEMPTS = 8
# A slot a kill left held is freed by RQ's maintenance (every 15 s, by any worker).
SLOTS_TIMEOUT = 40.0
# Unended jobs with nothing queued, started, scheduled or deferred for this long are lost, not late.
QUIET_SECONDS = 5.0


@dataclass(frozen=True)
class SoakConfig:
    jobs: int = 2000
    workers: int = 2
    batch: int = 250
    fail_fraction: float = 0.1
    cancel_fraction: float = 0.01
    job_ms: float = 5.0  # each job sleeps this long: cheap, and long enough for a kill to land
    kill_every: tuple[float, float] = (2.0, 5.0)  # seconds between kills, drawn uniformly
    max_kills: int | None = None  # None: keep killing while jobs wait
    max_backlog: int = 5000  # queued jobs at most: a 100,000-job run stays a steady load
    drain_timeout: float = 120.0  # after the queues empty: abandoned jobs need a sweep to recover
    min_rate: float = 10.0  # jobs/s: a load slower than this (plus 5 minutes) is a stalled soak
    seed: int = 1
    kind: str = "fork"  # the workers' kind: fork, concurrent or pool (what each is killed with: KILL_KINDS)
    log_level: str = "WARNING"  # INFO writes lines per job: more CPU in logging than in jobs

    @classmethod
    def for_kind(cls, kind: str, **overrides: Any) -> SoakConfig:
        """The soak of `kind`'s workers: concurrent workers, and pools (two children each), drain 5 ms
        jobs before the first kill, so their jobs last longer and their kills come sooner
        (`overrides` win)."""
        settings = KIND_SETTINGS.get(kind, {})
        return cls(**{**settings, **overrides, "kind": kind})


KIND_SETTINGS: dict[str, dict[str, Any]] = {
    "concurrent": {"job_ms": 50.0, "kill_every": (0.5, 2.0)},
    # A pool's children are in-process workers, whose runs lapse only at their job's timeout plus a
    # minute (no heartbeat while a job runs): a job cut off by a kill of the whole pool waits about
    # 90 s (soak_step's 30 s timeout, plus 60) and a maintenance pass for its sweep.
    "pool": {"job_ms": 20.0, "kill_every": (0.5, 1.5), "drain_timeout": 180.0},
}


@dataclass
class SoakReport:
    config: SoakConfig
    accounting: Accounting
    kills: list[Kill]
    wall_seconds: float  # first enqueue until every accepted job ended
    load_seconds: float  # first enqueue until the queues were empty, the enqueues all done
    ended_by_load_end: int
    enqueue_seconds: float
    abandoned_found_after: dict[str, float]  # job id: seconds from its worker's kill to the sweep
    posts_retried: int
    log_dir: Path
    most_held_back: int = 0  # the most jobs seen held by their rate limit or waiting for a cap's slot

    @property
    def jobs_per_second(self) -> float:
        return self.accounting.accepted / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def load_jobs_per_second(self) -> float:
        return self.ended_by_load_end / self.load_seconds if self.load_seconds else 0.0

    def problems(self) -> list[str]:
        return self.accounting.problems

    def summary(self) -> str:
        a, config = self.accounting, self.config
        worker_kills = [k for k in self.kills if k.kind == "worker"]
        after = Counter(k.status_after or "idle" for k in worker_kills)
        waits = self.abandoned_found_after.values()
        found = f"{len(waits)} of {after['started']}" + (f", in {max(waits):.1f} s at most" if waits else "")
        outcomes = ", ".join(f"{count} {status}" for status, count in sorted(after.items()))
        other_hits = sum(k.job_id is not None for k in self.kills if k.kind != "worker")
        other = " and ".join(KILL_KINDS[config.kind][1:])
        rows = [
            ("accepted (job ids answered 202)", f"{a.accepted:,}"),
            ("finished", f"{a.count('finished'):,}"),
            ("failed", f"{a.count('failed'):,}"),
            ("canceled", f"{a.count('canceled'):,}"),
            ("stopped (cancelled once started)", f"{a.count('stopped'):,}"),
            ("finished + failed + canceled + stopped", f"{a.ended:,}"),
            ("not ended", f"{a.accepted - a.ended:,}"),
            ("jobs with two final results", f"{a.duplicated:,}"),
            ("left in the started registries", f"{a.started_left:,}"),
            ("worker kills: the job's status after", f"{len(worker_kills)}: {outcomes}"),
            (f"{other} kills (while a job ran)", f"{len(self.kills) - len(worker_kills)} ({other_hits})"),
            ("abandoned (started, worker dead): swept", found),
            ("most held back at once (held, rate_limited)", f"{self.most_held_back:,}"),
            ("failed: kills used up a job's retries", f"{a.failed_by_kill:,}"),
            ("enqueue", f"{self.enqueue_seconds:.1f} s in batches of {config.batch}, "
             f"{self.posts_retried} POSTs retried"),
            ("load: until the queues emptied", f"{self.load_seconds:.1f} s, "
             f"{self.load_jobs_per_second:,.1f} jobs ended/s"),
            ("wall: first enqueue to last end", f"{self.wall_seconds:.1f} s"),
            ("throughput over the wall time", f"{self.jobs_per_second:,.1f} jobs/s"),
        ]  # fmt: skip
        width = max(len(name) for name, _ in rows)
        lines = [
            f"soak: {config.jobs:,} {JOB} jobs, every {LIMITED_EVERY}th batch {LIMITED_JOB} (capped and "
            f"rate-limited per key) ({config.fail_fraction:.0%} failing, "
            f"{config.cancel_fraction:.0%} cancelled), {config.workers} {config.kind} workers, "
            f"seed {config.seed}"
        ]
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
        lines.append("invariants: " + ("held" if not a.problems else "BROKEN"))
        lines += [f"  - {problem}" for problem in a.problems]
        return "\n".join(lines)

    def kill_log(self) -> str:
        return "\n".join(
            f"  {k.at:7.2f} s  {k.kind:<6} {k.worker:<8} job {k.job_id or '-'}"
            + (f" -> {k.status_after or '-'}" if k.kind == "worker" else "")
            for k in self.kills
        )


@dataclass
class Producer:
    """Enqueues the jobs over HTTP in batches, in a thread, and cancels a few of them."""

    client: httpx2.Client
    connection: redis.Redis
    config: SoakConfig
    submitted: Submitted = field(default_factory=Submitted)
    stopping: threading.Event = field(default_factory=threading.Event)
    posts_retried: int = 0
    error: BaseException | None = None
    seconds: float = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._produce(random.Random(self.config.seed))
        except BaseException as exc:  # reported by the main thread, which owns the processes
            self.error = exc
        self.seconds = time.monotonic() - started

    def _produce(self, rng: random.Random) -> None:
        config, run_id = self.config, f"soak-{os.getpid()}-{time.time_ns()}"
        for number, first in enumerate(range(0, config.jobs, config.batch)):
            if self.stopping.is_set():
                return
            while backlog(self.connection, QUEUES) > config.max_backlog:
                if self.stopping.wait(0.2):
                    return
            items: list[dict[str, Any]] = [
                {"n": n, "fail": rng.random() < config.fail_fraction, "ms": config.job_ms}
                for n in range(first, min(first + config.batch, config.jobs))
            ]
            name = LIMITED_JOB if number % LIMITED_EVERY == LIMITED_EVERY - 1 else JOB
            if name == LIMITED_JOB:
                for item in items:
                    item["key"] = f"k{item['n'] % LIMITED_KEYS}"
            jobs = self._post(name, items, f"{run_id}-{number}", QUEUES[number % len(QUEUES)])
            for item, job in zip(items, jobs, strict=True):
                self.submitted.add(job["id"], item["n"], item["fail"])
            for job in rng.sample(jobs, round(len(jobs) * config.cancel_fraction)):
                self._cancel(job["id"])

    def _post(self, name: str, items: list[dict[str, Any]], key: str, queue: str) -> list[dict[str, Any]]:
        for attempt in range(POST_ATTEMPTS):
            if attempt:
                self.posts_retried += 1
                time.sleep(min(0.25 * 2**attempt, 5))
            try:
                response = self.client.post(
                    f"/jobs/{name}/batch",
                    json=items,
                    params={"queue": queue},
                    headers={"Idempotency-Key": key},
                )
            except httpx2.TransportError:
                continue  # the same key: a batch the web did write is returned, not written twice
            if response.status_code == 503:
                continue
            if response.status_code != 202:
                raise SoakError(f"batch {key}: {response.status_code} {response.text[:500]}")
            jobs: list[dict[str, Any]] = response.json()
            return jobs
        raise SoakError(f"batch {key}: no answer after {POST_ATTEMPTS} attempts")

    def _cancel(self, job_id: str) -> None:
        response = self.client.post(f"/jobs/{job_id}/cancel")
        if response.status_code == 200:
            self.submitted.cancel_answers[job_id] = response.json()["status"]
        elif response.status_code != 409:  # 409: it had ended already, nothing to account
            raise SoakError(f"cancel {job_id}: {response.status_code} {response.text[:500]}")


@dataclass
class AbandonWatch:
    """How long after its worker's kill RQ's sweep took each abandoned job out of `started`."""

    connection: redis.Redis
    waiting: dict[str, float] = field(default_factory=dict)  # job id: when its worker died
    most_held_back: int = 0
    found_after: dict[str, float] = field(default_factory=dict)  # job id: seconds

    def add(self, kill: Kill) -> None:
        if kill.abandoned and kill.job_id is not None:
            self.waiting[kill.job_id] = time.monotonic()

    def poll(self) -> None:
        ids = list(self.waiting)
        now = time.monotonic()
        for job_id, status in zip(ids, statuses(self.connection, ids), strict=True):
            if status != "started":
                self.found_after[job_id] = now - self.waiting.pop(job_id)


def run(config: SoakConfig, scratch: Path) -> SoakReport:
    """Run one soak in `scratch` (Redis data, logs) and account for every job; stops all it started."""
    # The soak's catalogue (bench/soak/jobs.py): the example jobs and `soak_step`.
    own = {"LOG_LEVEL": config.log_level, "JOBS_MODULE": JOBS_MODULE}
    env = child_env(**own)
    with (
        running_redis(scratch / "redis") as server,
        running_stack(server.url, scratch / "logs", names=("web",), env=own) as stack,
    ):
        connection = redis.Redis.from_url(server.url, socket_timeout=30)
        worker_env = child_env(**{**env, "REDIS_URL": server.url})
        workers = Workers(connection, worker_env, scratch / "logs", config.kind)
        try:
            workers.wait_ready([workers.start() for _ in range(config.workers)])
            producer = Producer(stack.client, connection, config)
            t0 = time.monotonic()
            watch = AbandonWatch(connection)
            kills = _load(config, producer, workers, watch, t0)
            load_end = time.monotonic()
            ids = list(producer.submitted.fail)
            ended_by_load_end = sum(s in TERMINAL for s in statuses(connection, ids))
            _drain(connection, ids, watch, config.drain_timeout)
            wall = time.monotonic() - t0
            wait_until(lambda: not slots_held(connection), SLOTS_TIMEOUT, interval=0.5)
            accounting = account(connection, stack.client, producer.submitted, QUEUES)
            return SoakReport(
                config=config,
                accounting=accounting,
                kills=kills,
                wall_seconds=wall,
                load_seconds=load_end - t0,
                ended_by_load_end=ended_by_load_end,
                enqueue_seconds=producer.seconds,
                abandoned_found_after=watch.found_after,
                posts_retried=producer.posts_retried,
                most_held_back=watch.most_held_back,
                log_dir=scratch / "logs",
            )
        finally:
            workers.stop_all()
            connection.close()


def _load(
    config: SoakConfig, producer: Producer, workers: Workers, watch: AbandonWatch, t0: float
) -> list[Kill]:
    """Enqueue (in a thread) and kill at random until every job is enqueued and the queues are empty."""
    rng = random.Random(config.seed + 1)
    deadline = t0 + 300 + config.jobs / config.min_rate
    thread = threading.Thread(target=producer.run, name="soak-producer", daemon=True)
    thread.start()
    kills: list[Kill] = []
    next_kill = t0 + rng.uniform(*config.kill_every)
    try:
        while thread.is_alive() or backlog(watch.connection, QUEUES):
            if producer.error is not None:
                break
            if time.monotonic() > deadline:
                raise SoakError(f"the load did not drain in {deadline - t0:.0f} s: workers stalled?")
            watch.poll()
            watch.most_held_back = max(watch.most_held_back, held_back(watch.connection))
            now = time.monotonic()
            if now >= next_kill and (config.max_kills is None or len(kills) < config.max_kills):
                # The kind's kills in turn; worker kills aim at a started job until one is abandoned.
                kinds = KILL_KINDS[config.kind]
                kind = kinds[len(kills) % len(kinds)]
                aim = not any(kill.abandoned for kill in kills)
                kills.append(workers.kill(kind, rng, now - t0, aim=aim))
                watch.add(kills[-1])
                next_kill = time.monotonic() + rng.uniform(*config.kill_every)
            time.sleep(0.05)
    finally:
        producer.stopping.set()
        thread.join(timeout=30)
    if producer.error is not None or thread.is_alive():
        raise SoakError(f"enqueueing failed: {producer.error!r}") from producer.error
    return kills


def _drain(connection: redis.Redis, ids: list[str], watch: AbandonWatch, timeout: float) -> None:
    """Until every job has ended, or nothing is left anywhere that could still move them (bounded).

    A job cut off by a kill waits in its queue's started registry for a sweep; one that is in no
    queue and no registry will never run: waiting longer for it would only hide it.
    """
    pending, quiet_since = ids, None

    def settled() -> bool:
        nonlocal pending, quiet_since
        watch.poll()
        found = statuses(connection, pending)
        pending = [job_id for job_id, status in zip(pending, found, strict=True) if status not in TERMINAL]
        if not pending:
            return True
        if in_flight(connection, QUEUES):
            quiet_since = None
            return False
        quiet_since = quiet_since or time.monotonic()
        return time.monotonic() - quiet_since > QUIET_SECONDS

    wait_until(settled, timeout, interval=0.5)
