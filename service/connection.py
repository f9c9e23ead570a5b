"""Redis connections for the web process and the workers, made on demand, never at import."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import Script
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.utils import HIREDIS_AVAILABLE

from service.settings import Settings

# Longest pause between a worker's attempts to reach Redis again (its recovery delay).
PATIENT_BACKOFF_CAP = 1.0


class SignalSafePacker(HiredisRespSerializer):
    """redis-py's hiredis command packer, with the numbers of a command written as bytes here first.

    hiredis (3.5.0) writes an int or float argument with `PyObject_Repr`, which on CPython first runs
    the signal handlers due; when one raises (a worker's stop: RQ raises StopRequested, or
    SystemExit, from its SIGTERM and SIGINT handlers), the repr is NULL and hiredis dereferences it:
    the worker dies of SIGSEGV instead of stopping. Given only text and bytes, hiredis runs no
    Python code; numbers written here (as repr, the same bytes hiredis writes) let a handler's
    exception be an ordinary one, raised in Python.
    """

    def pack(self, *args: Any) -> list[bytes]:
        if any(type(arg) in _NUMBERS for arg in args):
            args = tuple(repr(arg).encode() if type(arg) in _NUMBERS else arg for arg in args)
        packed: list[bytes] = super().pack(*args)
        return packed


_NUMBERS = (int, float)
# One for every client, so that clients made alike have equal connection arguments.
SIGNAL_SAFE_PACKER = SignalSafePacker()


def _options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.redis_timeout,
        "socket_timeout": settings.redis_timeout + 5,
        "health_check_interval": 30,
    }
    if settings.redis_url.startswith("rediss://") and not settings.redis_tls_verify:
        # Heroku Redis presents a self-signed certificate; TLS still encrypts the traffic.
        options["ssl_cert_reqs"] = "none"
    return options


def connect(settings: Settings, *, patient: bool = False) -> redis.Redis:
    """A Redis client for the web (fails fast) or, `patient`, for workers (waits for Redis).

    The web answers 503 at once when Redis is away: one immediate retry covers a pooled
    connection that a restarted Redis closed. A worker has nobody to answer: its every command
    retries, backing off up to a second, until Redis is back. RQ rides out an outage only while
    it waits for work; anywhere else (a job ending, a heartbeat) it would exit.
    """
    if patient:
        retry = Retry(ExponentialBackoff(cap=PATIENT_BACKOFF_CAP, base=0.05), -1)
    else:
        retry = Retry(NoBackoff(), 1)
    # The workers' signal handlers raise, wherever the main thread is: in a command's packing too.
    packer = {"command_packer": SIGNAL_SAFE_PACKER} if HIREDIS_AVAILABLE else {}
    return redis.Redis.from_url(settings.redis_url, retry=retry, **_options(settings), **packer)


_scripts: dict[str, Script] = {}


def script(connection: redis.Redis, source: str) -> Script:
    """A Lua script sent by its SHA (EVALSHA: redis-py loads it where a server lacks it), made once per
    source: what EVAL would send as text each call, and Redis hash, only once. Call it with
    `client=connection`."""
    found = _scripts.get(source)
    if found is None:
        found = _scripts[source] = connection.register_script(source)
    return found


def connect_async(settings: Settings) -> redis.asyncio.Redis:
    """An asyncio Redis client for the web's streams, failing fast like `connect`'s.

    A stream waits on Redis for minutes; on the event loop it holds no thread while it does.
    """
    return redis.asyncio.Redis.from_url(
        settings.redis_url, retry=AsyncRetry(NoBackoff(), 1), **_options(settings)
    )


class CommandBatcher:
    """Sends the commands of concurrent requests to Redis together, one round trip at a time.

    Under load, hundreds of enqueues wait on Redis at once; each paying its own round trip (and
    redis-py's per-command work) costs more than the requests themselves. Here a command waits
    while the round trip before it is in flight, then goes with every other that arrived
    meanwhile: one write and one read for all of them. An idle server sends a lone command at
    once. Each command gets its own reply or error; a connection error fails every command of
    its round trip.
    """

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._pool = client.connection_pool
        self._waiting: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def execute(self, *args: Any) -> Any:
        """Send one command (e.g. "EVALSHA", sha, ...) and return its reply."""
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((pack(args), reply))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await reply

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    replies = await self._round_trip(b"".join(command for command, _ in batch), len(batch))
                except Exception as exc:  # Redis away: every command of this round trip fails
                    replies = [exc] * len(batch)
                except BaseException:  # cancelled (the loop is closing): leave no request waiting
                    for _, reply in batch:
                        reply.cancel()
                    raise
                for (_, reply), value in zip(batch, replies, strict=True):
                    if reply.done():  # its request went away (the client hung up)
                        continue
                    if isinstance(value, Exception):
                        reply.set_exception(value)
                    else:
                        reply.set_result(value)
        finally:
            self._sender = None

    async def _round_trip(self, commands: bytes, count: int) -> list[Any]:
        # Like the web's other clients, one immediate retry on a lost connection: a pooled one
        # that a restarted Redis closed fails before any reply.
        for attempt in (1, 2):
            connection = await self._pool.get_connection()
            replies: list[Any] = []
            try:
                await connection.send_packed_command(commands)
                for _ in range(count):
                    try:
                        replies.append(await connection.read_response())
                    except ResponseError as exc:  # this command's error; the others go on
                        replies.append(exc)
                return replies
            except (RedisConnectionError, RedisTimeoutError):
                if replies or attempt == 2:
                    raise
            finally:
                await self._pool.release(connection)
        raise AssertionError("unreachable")


class Packed:
    """Arguments packed once: the parts of a command that are the same each time it is sent.

    A job's template (service/store/write.py) sends the same few dozen field names and values in
    every enqueue; packed ahead, `pack` copies them as they are. redis-py's own clients cannot
    send one: `unpacked` gives them the plain arguments.
    """

    __slots__ = ("args", "data")

    def __init__(self, args: Sequence[Any]) -> None:
        self.args = tuple(args)
        self.data = b"".join(map(_bulk, self.args))

    def __repr__(self) -> str:
        return f"Packed({self.args!r})"


def pack(args: Sequence[Any]) -> bytes:
    """One command in Redis' protocol, its arguments encoded as redis-py encodes them.

    redis-py's own packer costs about a microsecond per argument; an enqueue sends dozens.
    """
    count = 0
    parts = [b""]
    for arg in args:
        if type(arg) is Packed:
            parts.append(arg.data)
            count += len(arg.args)
        else:
            parts.append(_bulk(arg))
            count += 1
    parts[0] = b"*%d\r\n" % count
    return b"".join(parts)


def unpacked(args: Sequence[Any]) -> list[Any]:
    """The plain arguments of a command that may hold `Packed` runs, for redis-py's clients."""
    return [value for arg in args for value in (arg.args if type(arg) is Packed else (arg,))]


def _bulk(arg: Any) -> bytes:
    kind = type(arg)
    if kind is str:
        data = arg.encode()
    elif kind is bytes:
        data = arg
    elif kind is int or kind is float:
        data = repr(arg).encode()
    elif isinstance(arg, bytes):
        data = bytes(arg)
    elif isinstance(arg, str):
        data = str.encode(arg)
    elif isinstance(arg, int | float) and not isinstance(arg, bool):
        data = repr(arg).encode()
    else:
        raise TypeError(f"cannot send {type(arg).__name__} to Redis: {arg!r}")
    return b"$%d\r\n%b\r\n" % (len(data), data)
