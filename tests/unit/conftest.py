"""Unit-test fixtures: the app on fakeredis, and a burst worker to run what it queued."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator

import fakeredis
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis import Redis

from service import tracing
from service.catalog import Registry, load_catalog
from service.settings import Settings
from service.web.app import create_app
from service.worker.main import build_worker
from tests.unit.client_bridge import AppBridge


@pytest.fixture
def settings() -> Settings:
    return Settings(redis_url="redis://fakeredis.invalid:6379/0")


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """The one fake Redis server behind a test's clients, sync and asyncio.

    Its lock is reentrant: tests that SIGTERM their own process have the worker's signal handler
    (which writes the shutdown to Redis, as RQ's does) run in the main thread wherever it is, even
    inside a command fakeredis is executing under its lock (a take script's); with fakeredis's
    plain lock that hangs the test. A real Redis serves the handler on another connection.
    """
    server = fakeredis.FakeServer()
    server.lock = threading.RLock()  # type: ignore[assignment]  # before any database is made with it
    return server


@pytest.fixture
def connection(fake_server: fakeredis.FakeServer) -> Iterator[Redis]:
    conn = fakeredis.FakeRedis(server=fake_server)
    yield conn
    conn.close()


@contextlib.contextmanager
def serving(
    settings: Settings, connection: Redis, server: fakeredis.FakeServer, registry: Registry | None = None
) -> Iterator[TestClient]:
    """The app on fakeredis with its lifespan running, its asyncio client on the same server."""
    async_connection = fakeredis.FakeAsyncRedis(server=server)
    app = create_app(settings, connection, registry, async_connection=async_connection)
    with TestClient(app) as test_client:
        try:
            yield test_client
        finally:
            # Its connections belong to this client's event loop; they are closed there.
            assert test_client.portal is not None
            test_client.portal.call(async_connection.aclose)


@pytest.fixture
def client(settings: Settings, connection: Redis, fake_server: fakeredis.FakeServer) -> Iterator[TestClient]:
    """The app with the example catalogue, on fakeredis, lifespan running."""
    with serving(settings, connection, fake_server) as test_client:
        yield test_client


@pytest.fixture
def bridge(client: TestClient) -> AppBridge:
    """The app behind an httpx transport for the Python client, with faults to inject."""
    return AppBridge(client)


@pytest.fixture
def make_client(
    settings: Settings, connection: Redis, fake_server: fakeredis.FakeServer
) -> Iterator[Callable[..., TestClient]]:
    """Build a client for other settings or another registry; all are closed afterwards."""
    with contextlib.ExitStack() as opened:

        def create(registry: Registry | None = None, **overrides: object) -> TestClient:
            app_settings = settings.model_copy(update=overrides)
            return opened.enter_context(serving(app_settings, connection, fake_server, registry))

        yield create


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every span ended kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture
def run_jobs(connection: Redis) -> Callable[..., None]:
    """Run every queued job to the end in this process, as a burst SimpleWorker."""

    def run(registry: Registry | None = None) -> None:
        worker = build_worker(connection, kind="simple", registry=registry or load_catalog())
        worker.work(burst=True, with_scheduler=False)

    return run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After a run that fuzzed the contract, say how many requests it made and what they got."""
    contract = sys.modules.get("tests.unit.test_contract")
    counts = getattr(contract, "STATUS_CLASSES", None)
    if counts:
        classes = ", ".join(f"{name}: {count}" for name, count in sorted(counts.items()))
        terminalreporter.write_line(f"contract fuzzing: {sum(counts.values())} requests; {classes}")
