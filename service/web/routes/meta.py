"""Routes about the service itself: the catalogue and health checks."""

from __future__ import annotations

import logging

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.schedules import runs
from service.schemas import CatalogEntry, CatalogSchedule, Health
from service.web.auth import require
from service.web.deps import ConnectionDep, RegistryDep
from service.web.errors import RedisUnavailableError

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/catalog", tags=["catalog"], response_model=list[CatalogEntry], dependencies=[require("read")])
def read_catalog(registry: RegistryDep, connection: ConnectionDep) -> list[CatalogEntry]:
    """The registered jobs, with their defaults, limits, input schema and schedule."""
    # A sync route, so FastAPI runs it in a thread: the Redis read (one round trip) blocks no one.
    try:
        scheduled = runs(registry, connection)
    except (RedisConnectionError, RedisTimeoutError) as exc:
        # The catalogue is mostly static: without Redis it lacks only the clock's last runs.
        log.warning("catalogue without the clock's last runs, Redis is unavailable: %s", exc)
        scheduled = runs(registry, None)
    return [
        CatalogEntry(
            name=job.name,
            description=job.description,
            queue=job.defaults.queue,
            timeout=job.defaults.timeout,
            retries=job.defaults.retries,
            retry_intervals=list(job.defaults.retry_intervals),
            result_ttl=job.defaults.result_ttl,
            ttl=job.defaults.ttl,
            rate_limit=job.flow.rate.text if job.flow is not None and job.flow.rate is not None else None,
            rate_key=job.defaults.rate_key,
            concurrency=job.defaults.concurrency,
            concurrency_key=job.defaults.concurrency_key,
            unique_by=list(job.unique.by) if job.unique is not None else None,
            unique_while=job.unique.declared if job.unique is not None else None,
            input_schema=job.input_model.model_json_schema(),
            schedule=CatalogSchedule(
                cron=job.schedule.cron,
                every=job.schedule.every,
                input=job.schedule.input,
                last_run_at=scheduled[job.name].last,
                next_run_at=scheduled[job.name].next,
            )
            if job.schedule is not None
            else None,
        )
        for job in registry
    ]


@router.get("/healthz", tags=["health"], response_model=Health)
async def read_liveness() -> Health:
    """Liveness: the process answers; Redis is not consulted."""
    return Health(status="ok")


@router.get(
    "/readyz",
    tags=["health"],
    response_model=Health,
    responses={503: {"description": "Redis does not answer"}},
)
async def read_readiness(connection: ConnectionDep) -> Health | JSONResponse:
    """Readiness: Redis answers a PING."""
    try:
        await anyio.to_thread.run_sync(connection.ping)
    except Exception as exc:  # any failure to PING means not ready, whatever its kind
        raise RedisUnavailableError(f"Redis is unavailable ({exc})") from None
    return Health(status="ok", redis="ok")
