"""Writes shared out: RQ's own commands recorded without being sent, and round trips many threads share.

On a small machine a round trip to Redis costs a worker more CPU than the commands it carries (two
system calls each way). `record` runs RQ's own code (or offload's) on a pipeline that is never
executed and keeps the commands it queued, so they can ride along in a script call that goes anyway
(the claim's: service/store/claim.py).

`GroupCommit` lets the threads of a concurrent worker share round trips: a thread that finds no call
in flight sends every item waiting, its own and those that came while the last call was out (the
ends of runs: service/store/end.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from redis import Redis

if TYPE_CHECKING:
    from redis.client import Pipeline

Command = tuple[Any, ...]
Item = TypeVar("Item")


def record(connection: Redis, write: Callable[[Pipeline], Any]) -> tuple[list[Command], Any]:
    """The commands `write` queues on a pipeline (never executed), and what `write` returned."""
    pipe = connection.pipeline(transaction=False)
    returned = write(pipe)
    commands = [tuple(args) for args, _options in pipe.command_stack]
    pipe.reset()
    return commands, returned


@dataclass(eq=False)
class _Pending(Generic[Item]):
    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    ran: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[Item]):
    """Items from many threads, sent together by `send` (one round trip for a list of items, a flag
    per item): whoever finds no call in flight sends all waiting."""

    def __init__(self, send: Callable[[Sequence[Item]], list[bool]]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._waiting: list[_Pending[Item]] = []
        self._sending = False

    def run(self, item: Item) -> bool:
        """Send `item` (with whatever else is waiting); its flag. Raises what `send` raised."""
        pending = _Pending(item)
        with self._lock:
            self._waiting.append(pending)
            if self._sending:
                leader = False
            else:
                self._sending = leader = True
        if leader:
            self._send_all()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.ran

    def _send_all(self) -> None:
        while True:
            with self._lock:
                batch, self._waiting = self._waiting, []
                if not batch:
                    self._sending = False
                    return
            try:
                ran = self._send([pending.item for pending in batch])
            except BaseException as exc:  # each waiting thread gets it: none of their items went
                for pending in batch:
                    pending.error = exc
                    pending.done.set()
                if not isinstance(exc, Exception):
                    with self._lock:
                        self._sending = False
                    raise
                continue
            for pending, flag in zip(batch, ran, strict=True):
                pending.ran = flag
                pending.done.set()
