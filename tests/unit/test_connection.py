"""The command batcher: concurrent commands share a round trip, each gets its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.connection import CommandBatcher, Packed, pack, unpacked
from service.dev.redis_server import free_port


def test_concurrent_commands_share_round_trips_and_get_their_own_replies() -> None:
    async def run() -> tuple[list[Any], int]:
        client = fakeredis.FakeAsyncRedis()
        batcher = CommandBatcher(client)
        trips = 0
        round_trip = batcher._round_trip

        async def counted(commands: bytes, count: int) -> list[Any]:
            nonlocal trips
            trips += 1
            return await round_trip(commands, count)

        batcher._round_trip = counted  # type: ignore[method-assign]
        try:
            await batcher.execute("SET", "text", "x")
            replies = await asyncio.gather(
                *(batcher.execute("INCR", "n") for _ in range(50)),
                batcher.execute("INCR", "text"),  # an error for this one command only
                return_exceptions=True,
            )
            return replies, trips
        finally:
            await client.aclose()

    replies, trips = asyncio.run(run())
    assert sorted(replies[:50]) == list(range(1, 51))
    assert isinstance(replies[50], ResponseError)
    assert trips <= 3  # the SET alone, then the 51 in one or two


def test_every_command_fails_with_a_connection_error_when_redis_is_away() -> None:
    async def run() -> list[Any]:
        client = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=1)
        try:
            batcher = CommandBatcher(client)
            return await asyncio.gather(*(batcher.execute("PING") for _ in range(3)), return_exceptions=True)
        finally:
            await client.aclose()

    assert all(isinstance(reply, RedisConnectionError) for reply in asyncio.run(run()))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("GET", "k"), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        (
            ("SET", "ü", b"\x00\xff", 12, 1.5),
            b"*5\r\n$3\r\nSET\r\n$2\r\n\xc3\xbc\r\n$2\r\n\x00\xff\r\n$2\r\n12\r\n$3\r\n1.5\r\n",
        ),
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[Any, ...], expected: bytes) -> None:
    assert pack(args) == expected
    assert b"".join(redis.asyncio.Connection().pack_command(*args)) == expected


def test_what_redis_py_would_refuse_is_refused() -> None:
    with pytest.raises(TypeError):
        pack(("SET", "k", True))


def test_packed_runs_are_sent_as_their_arguments_would_be() -> None:
    args = ("EVALSHA", Packed(["sha", "ü"]), 2, Packed([]), b"\x00", Packed([1.5, 7]))
    plain = unpacked(args)
    assert plain == ["EVALSHA", "sha", "ü", 2, b"\x00", 1.5, 7]
    assert pack(args) == pack(plain) == b"".join(redis.asyncio.Connection().pack_command(*plain))
