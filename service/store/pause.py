"""Pausing a queue: its jobs stay queued, and no worker takes one, until it is resumed.

A paused queue's name is in the set PAUSED_KEY. Enqueues do not look at it (a paused queue still
accepts jobs, their wake tokens included); the take script skips the queues in it
(service/store/queues.py), so a pause holds from the next take of every worker at once, and a job
already taken keeps running. A resume removes the name and pushes a wake token per queued job (at
most MAX_TOKENS), so idle workers look at once rather than at their next poll.
"""

from __future__ import annotations

from redis import Redis
from rq.utils import as_text

from service.connection import script
from service.store.errors import UnknownQueueError
from service.store.layout import PAUSED_KEY, WORKER_QUEUES, queue_key, wake_key
from service.store.wake import MAX_TOKENS

# KEYS: the paused set, the queue list, its wake list. ARGV: the queue's name.
# Unpauses the queue and wakes up to MAX_TOKENS idle workers for the jobs it holds, in one step:
# a worker cannot find the queue unpaused and the tokens not yet there, or the reverse.
_RESUME = """
local was_paused = redis.call('SREM', KEYS[1], ARGV[1])
local waiting = math.min(redis.call('LLEN', KEYS[2]), MAX_TOKENS)
for _ = 1, waiting do redis.call('RPUSH', KEYS[3], '1') end
if waiting > 0 then redis.call('LTRIM', KEYS[3], -MAX_TOKENS, -1) end
return was_paused
""".replace("MAX_TOKENS", str(MAX_TOKENS))


def pause(connection: Redis, name: str) -> bool:
    """Pause the queue `name`; False if it was paused already."""
    _check(name)
    return bool(connection.sadd(PAUSED_KEY, name))


def resume(connection: Redis, name: str) -> bool:
    """Resume the queue `name` and wake workers for its jobs; False if it was not paused."""
    _check(name)
    return bool(
        script(connection, _RESUME)(
            keys=[PAUSED_KEY, queue_key(name), wake_key(name)], args=[name], client=connection
        )
    )


def paused_queues(connection: Redis) -> frozenset[str]:
    """The names of the paused queues."""
    return frozenset(as_text(name) for name in connection.smembers(PAUSED_KEY))


def _check(name: str) -> None:
    if name not in WORKER_QUEUES:
        raise UnknownQueueError(name, WORKER_QUEUES)
