"""The one enqueue path: the API, in-process producers, the clock and webhooks all enqueue here.

`enqueue` (a Redis client, for threads and scripts) and `enqueue_async` (a command sender, for
the web's event loop) send the same single script call (service/store/write.py): a request's
jobs, their scheduling or dependencies, the listing index and the idempotency record are either
all in Redis or not at all. Each job carries its request's id and, tracing on, the context of the
enqueue's `send` span (service/tracing.py), which its worker's run continues.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from redis import Redis
from redis.exceptions import NoScriptError

from service.connection import unpacked
from service.store.layout import COUNTERS_KEY, counter_field
from service.store.options import EnqueueOptions, Idempotency
from service.store.write import WRITE_SCRIPT, NewJob, Write, deferred, prepare, promoted
from service.tracing import Sending, sending

if TYPE_CHECKING:
    from redis.client import Pipeline

    from service.catalog import RegisteredJob

# What sends one command and returns its reply: a CommandBatcher's `execute` (service/connection.py),
# which sends `Packed` runs as they are.
Execute = Callable[..., Awaitable[Any]]


class EnqueueError(Exception):
    """A request that cannot be enqueued as asked; nothing was written."""


class UnknownDependencyError(EnqueueError):
    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"depends_on names jobs that do not exist: {', '.join(missing)}")
        self.missing = list(missing)


class IdempotencyConflictError(EnqueueError):
    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different request (job, input or options); "
            "use a new key for a new request"
        )


@dataclass
class Enqueued:
    """The jobs an enqueue wrote or, `replayed`, the ids of those the key's first request wrote."""

    ids: list[str]  # one per input: the job written for it, or the one it duplicates
    jobs: list[NewJob] = field(default_factory=list)  # as written, in order; empty for a replay
    replayed: bool = False
    # Places (0-based) of inputs of a unique job that got an existing job, or one written for an
    # earlier input of the same request, instead of a new one (service/store/unique.py).
    duplicates: list[int] = field(default_factory=list)


def enqueue(
    connection: Redis,
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions | None = None,
    idempotency: Idempotency | None = None,
) -> Enqueued:
    """Enqueue one job per validated input, all or nothing."""
    options = options or EnqueueOptions()
    with sending(_queue(registered, options), len(inputs)) as send:
        write = _prepare(registered, inputs, options, idempotency, send.meta)
        try:
            reply = connection.execute_command(*unpacked(write.command))
        except NoScriptError:  # a new or restarted Redis: teach it the script; nothing was written
            connection.script_load(WRITE_SCRIPT)
            reply = connection.execute_command(*unpacked(write.command))
        return _outcome(write, reply, options, send)


async def enqueue_async(
    execute: Execute,
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions | None = None,
    idempotency: Idempotency | None = None,
) -> Enqueued:
    """`enqueue` for an event loop: `execute` sends one command (a batcher's, or a client's)."""
    options = options or EnqueueOptions()
    with sending(_queue(registered, options), len(inputs)) as send:
        write = _prepare(registered, inputs, options, idempotency, send.meta)
        try:
            reply = await execute(*write.command)
        except NoScriptError:
            await execute("SCRIPT", "LOAD", WRITE_SCRIPT)
            reply = await execute(*write.command)
        return _outcome(write, reply, options, send)


def _queue(registered: RegisteredJob[..., Any], options: EnqueueOptions) -> str:
    return options.queue or registered.defaults.queue


def _prepare(
    registered: RegisteredJob[..., Any],
    inputs: Sequence[BaseModel],
    options: EnqueueOptions,
    idempotency: Idempotency | None,
    carried: dict[str, Any],
) -> Write:
    kwargs = [params.model_dump(mode="json") for params in inputs]
    fingerprint = _fingerprint(registered, kwargs, options) if idempotency is not None else ""
    return prepare(registered, kwargs, options, idempotency, fingerprint, carried)


def _outcome(write: Write, reply: list[Any], options: EnqueueOptions, send: Sending) -> Enqueued:
    """What the script's reply means: written (maybe deferred), a replay, or a missing dependency."""
    what = _text(reply[0])
    if what == "replay":
        record = json.loads(reply[1])
        if record["fingerprint"] != write.fingerprint:
            raise IdempotencyConflictError
        send.written(list(record["job_ids"]), replayed=True)
        return Enqueued(ids=list(record["job_ids"]), replayed=True, duplicates=record.get("duplicates", []))
    if what == "missing":
        raise UnknownDependencyError([options.depends_on[int(d) - 1] for d in reply[1:]])
    assert what == "written", reply
    jobs = deferred(write.jobs) if _text(reply[2]) == "deferred" else write.jobs
    let_through = int(reply[3])  # capped jobs that got a slot at once (maybe older ones of their key)
    if let_through:
        jobs = promoted(jobs, {_text(job_id) for job_id in reply[4 : 4 + let_through]})
    rest = reply[4 + let_through :]
    ids = [job.id for job in jobs]
    if not rest:  # no duplicate: every input got the job written for it
        send.written(ids, replayed=False)
        return Enqueued(ids=ids, jobs=jobs)
    owners = {int(place) - 1: _text(owner) for place, owner in zip(rest[::2], rest[1::2], strict=True)}
    ids = [owners.get(n, job_id) for n, job_id in enumerate(ids)]
    written = [job for n, job in enumerate(jobs) if n not in owners]
    send.written(ids, replayed=False)
    return Enqueued(ids=ids, jobs=written, duplicates=sorted(owners))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def count_event(pipe: Redis | Pipeline, name: str, event: str, amount: int = 1) -> None:
    """Add to the cluster-wide count of `event` for jobs named `name` (read by /metrics)."""
    pipe.hincrby(COUNTERS_KEY, counter_field(name, event), amount)


def _fingerprint(
    registered: RegisteredJob[..., Any], inputs: list[dict[str, Any]], options: EnqueueOptions
) -> str:
    """What makes two requests the same request, whatever the JSON's spacing or key order (and, for
    a `delay`, whenever it is repeated: the delay is compared, not the time it came to)."""
    asked = dict(vars(options), at=None) if options.delay is not None else vars(options)
    request = {
        "job": registered.name,
        "inputs": inputs,
        "options": {key: str(value) for key, value in sorted(asked.items())},
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
