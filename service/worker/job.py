"""The job class workers read jobs with: functions only from the catalogue, callbacks only offload's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, ClassVar

from rq.job import Job
from rq.utils import decode_redis_hash, utcparse

from service.catalog import RegisteredJob, Registry
from service.store.layout import CALLBACK_HOOKS
from service.worker import webhooks

# The fields of a job's hash that RQ's Job.restore parses as dates, each with `utcparse`: a
# `strptime`, about 8 µs, and a lock the worker's other threads then wait on.
DATE_FIELDS = ("created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat")
# How long RQ's `utcformat` makes a date: %Y-%m-%dT%H:%M:%S.%fZ.
STAMP_LENGTH = 27


def parse_stamp(value: bytes | str) -> datetime:
    """RQ's `utcparse` of a date RQ wrote, in a fiftieth of the time: `fromisoformat` reads RQ's
    format as the same UTC datetime. Any other text (RQ's older format) goes to RQ's."""
    text = value.decode() if isinstance(value, bytes) else value
    if len(text) == STAMP_LENGTH and text[10] == "T" and text[-1] == "Z":
        return datetime.fromisoformat(text)
    return utcparse(text)


class UnregisteredJobError(RuntimeError):
    """A job in Redis names a function that is not in the catalogue."""


def registered_job(job: Job) -> RegisteredJob[..., Any] | None:
    """The catalogue's job for a job's stored function (or offload's own webhook delivery); None if
    the catalogue has none. Reads the stored data: fails for a job that is not JSON."""
    registry: Registry | None = getattr(type(job), "registry", None)  # OffloadJob's, set by build_worker
    path = job.func_name
    return (registry.by_path(path) if registry is not None else None) or webhooks.internal.by_path(path)


class OffloadJob(Job):
    """A job whose function comes from the registry, never from importing a stored dotted path.

    Redis is shared with anything that can reach it; RQ would import and call whatever path a
    job names. Resolving through the registry keeps workers to the catalogue, and `run` checks
    the stored input against the job's model before calling it.
    """

    registry: ClassVar[Registry]  # set by build_worker: the catalogue this worker runs

    @staticmethod
    def run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
        """How an async job's coroutine runs: on a loop of its own; a concurrent worker's shared one."""
        return asyncio.run(coroutine)

    def restore(self, raw_data: Any) -> Any:
        """RQ's, with its dates parsed by `parse_stamp`: a worker restores every job it takes."""
        fields = decode_redis_hash(raw_data)
        stamps = {name: fields.pop(name) for name in DATE_FIELDS if name in fields}
        restored = super().restore(fields)
        for name, stamp in stamps.items():
            if stamp:  # RQ leaves an empty one as it leaves a missing one
                setattr(self, name, parse_stamp(stamp))
        return restored

    def _execute(self) -> Any:
        # RQ's, with the coroutine handed to run_coroutine.
        result = self.func(*self.args, **self.kwargs)
        if asyncio.iscoroutine(result):
            return self.run_coroutine(result)
        return result

    @property
    def func(self) -> Callable[..., Any]:
        registered = registered_job(self)
        if registered is None or self.instance is not None:
            raise UnregisteredJobError(
                f"{self.func_name!r} is not a registered job; workers run only the catalogue"
            )
        return registered.run

    # RQ imports callbacks by the dotted path a job stores, too: only offload's own are allowed.
    @property
    def success_callback(self) -> Any:
        _check_callback(self._success_callback_name)
        return super().success_callback

    @property
    def failure_callback(self) -> Any:
        _check_callback(self._failure_callback_name)
        return super().failure_callback

    @property
    def stopped_callback(self) -> Any:
        _check_callback(self._stopped_callback_name)
        return super().stopped_callback


def _check_callback(name: str | None) -> None:
    """Refuse, before anything is imported, a callback that is not one of offload's."""
    if name is not None and name not in CALLBACK_HOOKS.values():
        raise UnregisteredJobError(f"{name!r} is not one of offload's callbacks; refusing to call it")
