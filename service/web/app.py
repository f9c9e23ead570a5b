"""The FastAPI application: `create_app()` builds it; nothing connects until it starts."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from service import tracing
from service.catalog import Registry, load_catalog
from service.connection import CommandBatcher, connect, connect_async
from service.logs import configure_logging
from service.settings import ConfigError, Settings, is_production, load_settings
from service.web import errors
from service.web.auth import KeyRing, require
from service.web.dashboard import Dashboard
from service.web.limits import BodyLimitMiddleware
from service.web.metrics import Metrics
from service.web.observe import RequestObserver, trace_requests
from service.web.routes import control, events, listing, meta
from service.web.routes import jobs as job_routes
from service.web.routes import metrics as metrics_routes

# Threads for `?wait=` requests, apart from the pool that serves every other route.
WAIT_THREADS = 100


def create_app(
    settings: Settings | None = None,
    connection: Redis | None = None,
    registry: Registry | None = None,
    *,
    async_connection: AsyncRedis | None = None,
) -> FastAPI:
    """Build the app; `connection` and `async_connection` (e.g. fakeredis) replace the clients
    made from REDIS_URL (the asyncio one serves the event streams and the common enqueues).

    Built without `settings` (by uvicorn, from the Procfile), it also sets up the process's logging
    (LOG_FORMAT, LOG_LEVEL), its tracing (OTEL_*) and, once started, its garbage collection; an app
    given its settings (tests, embedding) leaves the process to its host.
    """
    own_process = settings is None
    if settings is None:
        settings = load_settings()
        configure_logging(settings.log_format, settings.log_level)
        tracing.configure("offload-web")  # only if OTEL_* asks for it: README "Tracing"
    if is_production(settings) and not settings.api_keys:
        raise ConfigError(
            "API_KEYS is required in production (DYNO or ENV=production is set): "
            'set API_KEYS=\'[{"name": "...", "key": "...", "scopes": ["read", "enqueue"]}]\''
        )
    registry = registry or load_catalog(settings.jobs_module)
    dashboard = Dashboard(settings, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = connection is None
        app.state.connection = connect(settings) if own else connection
        app.state.wait_limiter = anyio.CapacityLimiter(WAIT_THREADS)
        own_async = async_connection is None
        app.state.async_connection = connect_async(settings) if own_async else async_connection
        app.state.batcher = CommandBatcher(app.state.async_connection)  # the enqueue routes' writes
        try:
            dashboard.start(app.state.connection)
            if own_process:
                freeze_startup_heap()
            yield
        finally:
            dashboard.stop()
            if own_async:
                await app.state.async_connection.aclose()
            if own:
                app.state.connection.close()

    app = FastAPI(
        title="offload",
        summary="Slow work off the request path: typed jobs over HTTP, run by RQ workers.",
        version="0.1.0",
        lifespan=lifespan,
        responses=errors.COMMON_RESPONSES,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics = Metrics(registry.names())
    errors.install(app)
    app.state.keys = KeyRing(settings.api_keys)
    app.include_router(meta.router)
    app.include_router(metrics_routes.router)
    app.include_router(events.router, dependencies=[require("read")])
    app.include_router(listing.router, dependencies=[require("read")])
    app.include_router(control.router, dependencies=[require("admin")])
    # On the app's own router, in their place: an included router costs every request it serves
    # two passes over its routes (FastAPI matches them again to dispatch), the jobs' a dozen.
    job_routes.add_routes(app.router, registry)
    dashboard.install(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Added last, so outermost: it sees every answer, the body limit's 413s included.
    app.add_middleware(RequestObserver, metrics=metrics)
    if tracing.enabled():
        trace_requests(app)
    return app


def freeze_startup_heap() -> None:
    """Leave what startup built (modules, the app, its schemas: ~90,000 objects) out of every
    garbage collection from now on.

    Concurrent enqueues keep hundreds of young objects alive while they wait on Redis together,
    so the collector runs every few requests, and each full collection walked the whole startup
    heap: a quarter of an enqueue's CPU. Frozen objects are still freed once unreferenced; only
    cycles among them would stay, hence the collection first.
    """
    gc.collect()
    gc.freeze()
