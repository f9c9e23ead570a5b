"""Unit-test fixtures: the app on fakeredis, and a burst worker to run what it queued."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fakeredis
import pytest
from fastapi.testclient import TestClient
from redis import Redis

import jobs
from jobs.registry import Registry
from service.app import create_app
from service.settings import Settings
from service.worker import build_worker


@pytest.fixture
def settings() -> Settings:
    return Settings(redis_url="redis://fakeredis.invalid:6379/0")


@pytest.fixture
def connection() -> Iterator[Redis]:
    conn = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield conn
    conn.close()


@pytest.fixture
def client(settings: Settings, connection: Redis) -> Iterator[TestClient]:
    """The app with the example catalogue, on fakeredis, lifespan running."""
    with TestClient(create_app(settings, connection)) as test_client:
        yield test_client


@pytest.fixture
def make_client(settings: Settings, connection: Redis) -> Iterator[Callable[..., TestClient]]:
    """Build a client for other settings or another registry; all are closed afterwards."""
    opened: list[TestClient] = []

    def create(registry: Registry | None = None, **overrides: object) -> TestClient:
        app = create_app(settings.model_copy(update=overrides), connection, registry)
        test_client = TestClient(app)
        test_client.__enter__()
        opened.append(test_client)
        return test_client

    yield create
    for test_client in opened:
        test_client.__exit__(None, None, None)


@pytest.fixture
def run_jobs(connection: Redis) -> Callable[..., None]:
    """Run every queued job to the end in this process, as a burst SimpleWorker."""

    def run(registry: Registry | None = None) -> None:
        worker = build_worker(connection, kind="simple", registry=registry or jobs.registry)
        worker.work(burst=True, with_scheduler=False)

    return run
