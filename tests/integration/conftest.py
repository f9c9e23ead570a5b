"""Fixtures that start real processes: a redis-server, and the Procfile's web and worker."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.dev.harness import Stack, StartRedis, StartStack, running_redis, running_stack
from service.dev.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for a module's tests."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The Procfile's web and worker on `redis_server`, shared by a module's tests."""
    with running_stack(redis_server.url, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    """A factory of redis-servers, `start_redis(data_dir, port=None)`; teardown stops them all."""
    with contextlib.ExitStack() as started:

        def start(data_dir: Path, port: int | None = None) -> RedisServer:
            return started.enter_context(running_redis(data_dir, port))

        yield start


@pytest.fixture
def start_stack(start_redis: StartRedis, tmp_path: Path) -> Iterator[StartStack]:
    """A factory of web + worker stacks, `start_stack(redis_url, env=None)`; teardown stops them all.

    Depends on `start_redis` so that its stacks stop before its servers do.
    """
    with contextlib.ExitStack() as started:
        count = 0

        def start(redis_url: str, env: dict[str, str] | None = None) -> Stack:
            nonlocal count
            count += 1
            return started.enter_context(running_stack(redis_url, tmp_path / f"stack{count}", env=env))

        yield start
