"""The soak's books: what was accepted, how each job ended, and the invariants, read from Redis.

Per accepted job, from its hash and its result stream (`rq:results:<id>`): exactly one terminal
status; finished means one successful result holding its own input's `n`, failed means one failed
result and no success; a job meant to succeed fails only by kills (its retries used up); canceled
and stopped jobs are ones the soak cancelled. Per queue, from RQ's registries: nothing queued,
started, scheduled, deferred, held by a rate limit or waiting for a cap's slot, no cap's slot still
held (a leaked slot would stall its key), and each job in the registry of its status only. The
API's `GET /queues` must agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
import redis
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.serializers import JSONSerializer

from service.store.counts import waiting_for_slots
from service.store.layout import (
    HELD_COUNTS_KEY,
    HELD_DUE_KEY,
    HELD_PREFIX,
    RL_KEYS_KEY,
    TERMINAL,
    concurrency_keys,
    queue_key,
)

FINAL_RESULTS = frozenset({Result.Type.SUCCESSFUL, Result.Type.FAILED, Result.Type.STOPPED})
# What RQ writes when a run was cut off: the worker saw its horse die, or a sweep found it abandoned.
KILL_MARKS = ("Work-horse terminated unexpectedly", "AbandonedJobError")
IN_FLIGHT: dict[str, Any] = {
    "started": StartedJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "deferred": DeferredJobRegistry,
}
CHUNK = 5000
EXAMPLES = 3  # ids quoted per broken invariant


@dataclass
class Submitted:
    """What the API accepted: each job id with its input, and the answers to the cancels sent."""

    n: dict[str, int] = field(default_factory=dict)
    fail: dict[str, bool] = field(default_factory=dict)
    cancel_answers: dict[str, str] = field(default_factory=dict)  # id -> status the cancel answered
    repeated: list[str] = field(default_factory=list)  # ids the API handed out twice

    def add(self, job_id: str, n: int, fail: bool) -> None:
        if job_id in self.fail:
            self.repeated.append(job_id)
        self.n[job_id], self.fail[job_id] = n, fail


@dataclass
class Accounting:
    accepted: int
    statuses: Counter[str]
    duplicated: int  # jobs with more than one final result (a job that ended twice)
    started_left: int  # entries left in the started registries
    failed_by_kill: int  # jobs meant to succeed that failed because kills used up their retries
    problems: list[str]

    def count(self, status: str) -> int:
        return self.statuses[status]

    @property
    def ended(self) -> int:
        return sum(self.statuses[s] for s in TERMINAL)


def queue_keys(queues: Iterable[str]) -> list[str]:
    keys = []
    for name in queues:
        key = queue_key(name)
        keys += [key, IntermediateQueue.get_intermediate_queue_key(key)]
    return keys


def backlog(connection: redis.Redis, queues: Iterable[str]) -> int:
    """Jobs waiting in the queues, or held back by flow control (a rate limit, a cap)."""
    with connection.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.llen(queue_key(name))
        waiting: list[int] = pipe.execute()
    return sum(waiting) + held_back(connection)


def in_flight(connection: redis.Redis, queues: Iterable[str]) -> int:
    """Jobs queued, started (or abandoned, awaiting a sweep), scheduled, deferred or held back."""
    with connection.pipeline(transaction=False) as pipe:
        for key in queue_keys(queues):
            pipe.llen(key)
        for name in queues:
            for kind in IN_FLIGHT.values():
                pipe.zcard(kind(name, connection=connection).key)
        sizes: list[int] = pipe.execute()
    return sum(sizes) + held_back(connection)


def held_back(connection: redis.Redis) -> int:
    """Jobs held by their rate limit (offload's held lists) or waiting for a cap's slot (RQ's)."""
    held: dict[bytes, bytes] = connection.hgetall(HELD_COUNTS_KEY)  # type: ignore[assignment]
    return sum(int(count) for count in held.values()) + sum(waiting_for_slots(connection).values())


def slots_held(connection: redis.Redis) -> int:
    """Slots of RQ's concurrency caps still held (by queued or running jobs, or leaked)."""
    keys: set[bytes] = connection.smembers(RL_KEYS_KEY)  # type: ignore[assignment]
    with connection.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zcard(concurrency_keys(key.decode())[1])
        return sum(pipe.execute())


def statuses(connection: redis.Redis, ids: Sequence[str]) -> list[str | None]:
    found: list[str | None] = []
    for start in range(0, len(ids), CHUNK):
        with connection.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + CHUNK]:
                pipe.hget(Job.key_for(job_id), "status")
            found += [s.decode() if s is not None else None for s in pipe.execute()]
    return found


def account(
    connection: redis.Redis, client: httpx2.Client, submitted: Submitted, queues: Sequence[str]
) -> Accounting:
    """Every accepted job's end, and each invariant that does not hold (`problems`)."""
    broken: dict[str, list[str]] = {}

    def flag(rule: str, job_id: str) -> None:
        broken.setdefault(rule, []).append(job_id)

    for job_id in submitted.repeated:
        flag("the API returned the same job id twice", job_id)
    ids = list(submitted.fail)
    tally: Counter[str] = Counter()
    by_status: dict[str, set[str]] = {}
    unended: list[str] = []
    duplicated = failed_by_kill = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        with connection.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.hget(Job.key_for(job_id), "status")
                pipe.xrange(Result.get_key(job_id))
            replies = pipe.execute()
        for job_id, status_raw, entries in zip(chunk, replies[::2], replies[1::2], strict=True):
            status = status_raw.decode() if status_raw is not None else "missing"
            tally[status] += 1
            by_status.setdefault(status, set()).add(job_id)
            results = [
                Result.restore(
                    job_id, rid.decode(), payload, connection=connection, serializer=JSONSerializer
                )
                for rid, payload in entries
            ]
            finals = [r for r in results if r.type in FINAL_RESULTS]
            successes = [r for r in finals if r.type == Result.Type.SUCCESSFUL]
            if len(finals) > 1:
                duplicated += 1
                flag("a job has more than one final result", job_id)
            meant_to_fail, cancel = submitted.fail[job_id], submitted.cancel_answers.get(job_id)
            if status not in TERMINAL:
                unended.append(job_id)
                flag(f"a job did not end ({status})", job_id)
            elif status == "finished":
                if len(successes) != 1 or successes[0].return_value != {"n": submitted.n[job_id]}:
                    flag("a finished job lacks its one successful result with its own n", job_id)
                if meant_to_fail:
                    flag("a job meant to fail finished", job_id)
            elif status == "failed":
                error = (finals[-1].exc_string or "") if finals else ""
                by_kill = any(mark in error for mark in KILL_MARKS)
                if successes or not finals or finals[-1].type != Result.Type.FAILED:
                    flag("a failed job lacks its one failed result", job_id)
                elif not meant_to_fail and not by_kill:
                    flag("a job meant to succeed failed, not by a kill", job_id)
                if not meant_to_fail and by_kill:
                    failed_by_kill += 1
            elif cancel is None:
                flag(f"a job nobody cancelled is {status}", job_id)
            elif status == "canceled" and results:
                flag("a canceled job has results", job_id)
            if cancel == "canceled" and status != "canceled":
                flag("a job the API said it canceled ran", job_id)
    somewhere = _located(connection, queues)
    for job_id in unended:
        if job_id not in somewhere:
            flag("lost: in no queue and no registry, nothing will run it", job_id)
    problems = [f"{rule}: {len(found)} ({', '.join(found[:EXAMPLES])})" for rule, found in broken.items()]
    if sum(tally[s] for s in TERMINAL) != len(ids):
        problems.append(
            f"finished + failed + canceled + stopped = {sum(tally[s] for s in TERMINAL)} != {len(ids)}"
        )
    started_left = _check_registries(connection, submitted, by_status, queues, problems)
    problems += _check_api(client, tally)
    return Accounting(len(ids), tally, duplicated, started_left, failed_by_kill, problems)


def _located(connection: redis.Redis, queues: Sequence[str]) -> set[str]:
    """The ids in the queues (or taken from them) and in the started, scheduled, deferred registries."""
    with connection.pipeline(transaction=False) as pipe:
        for key in queue_keys(queues):
            pipe.lrange(key, 0, -1)
        for name in queues:
            for kind in IN_FLIGHT.values():
                pipe.zrange(kind(name, connection=connection).key, 0, -1)
        replies = pipe.execute()
    # Started entries are `<job id>:<execution id>`; job ids hold no colon.
    found = {entry.decode().split(":")[0] for reply in replies for entry in reply}
    # Held by a rate limit (entries `<queue> <job id>`), or waiting for a cap's slot.
    raw: Any = connection
    for key in raw.scan_iter(f"{HELD_PREFIX}*"):
        found |= {entry.decode().split(" ", 1)[1] for entry in raw.lrange(key, 0, -1)}
    for key in raw.smembers(RL_KEYS_KEY):
        found |= {member.decode() for member in raw.zrange(concurrency_keys(key.decode())[2], 0, -1)}
    return found


def _check_registries(
    connection: redis.Redis,
    submitted: Submitted,
    by_status: dict[str, set[str]],
    queues: Sequence[str],
    problems: list[str],
) -> int:
    """Nothing in flight, and each job in the registry of its status only; the started entries left."""
    kinds: dict[str, Any] = {"finished": FinishedJobRegistry, "failed": FailedJobRegistry}
    kinds |= {"canceled": CanceledJobRegistry}
    with connection.pipeline(transaction=False) as pipe:
        for name in queues:
            for kind in kinds.values():
                pipe.zrange(kind(name, connection=connection).key, 0, -1)
            for kind in IN_FLIGHT.values():
                pipe.zcard(kind(name, connection=connection).key)
        for key in queue_keys(queues):
            pipe.llen(key)
        replies = iter(pipe.execute())
    members: dict[str, Counter[str]] = {kind: Counter() for kind in kinds}
    left: Counter[str] = Counter()
    for _ in queues:
        for kind in kinds:
            members[kind].update(m.decode() for m in next(replies))
        for kind in IN_FLIGHT:
            left[kind] += next(replies)
    left["queued (lists)"] = sum(replies)
    left["held or rate_limited"] = held_back(connection)
    left["held buckets due"] = int(connection.zcard(HELD_DUE_KEY))
    left["concurrency slots still held"] = slots_held(connection)
    for kind, count in left.items():
        if count:
            problems.append(f"{count} {kind} left in the queues' registries")
    homes = Counter(job_id for found in members.values() for job_id in found.elements())
    twice = [job_id for job_id, count in homes.items() if count > 1]
    if twice:
        problems.append(f"jobs in two registries at once: {len(twice)} ({', '.join(twice[:EXAMPLES])})")
    # RQ keeps stopped jobs in the failed registry.
    expected = {"finished": {"finished"}, "failed": {"failed", "stopped"}, "canceled": {"canceled"}}
    for kind, found in members.items():
        wanted = set().union(*(by_status.get(status, set()) for status in expected[kind]))
        if set(found) != wanted:
            problems.append(
                f"the {kind} registries hold {len(set(found) - wanted)} jobs of another status and miss "
                f"{len(wanted - set(found))} of theirs"
            )
    unknown = set(homes) - set(submitted.fail)
    if unknown:
        problems.append(f"registries hold {len(unknown)} jobs the API never accepted")
    return left["started"]


def _check_api(client: httpx2.Client, tally: Counter[str]) -> list[str]:
    """GET /queues counts what the books count."""
    response = client.get("/queues")
    if response.status_code != 200:
        return [f"GET /queues answered {response.status_code}"]
    api: Counter[str] = Counter()
    for queue in response.json():
        api.update(queue["counts"])
    expected = {
        "finished": tally["finished"],
        "failed": tally["failed"] + tally["stopped"],  # RQ keeps stopped jobs in the failed registry
        "canceled": tally["canceled"],
        "queued": 0,
        "held": 0,
        "started": 0,
        "scheduled": 0,
        "deferred": 0,
    }
    return [
        f"GET /queues counts {api[status]} {status}, the books {count}"
        for status, count in expected.items()
        if api[status] != count
    ]
