"""Routes about the service itself: the catalogue and health checks."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import ConnectionDep, RegistryDep
from service.errors import RedisUnavailableError
from service.schemas import CatalogEntry, Health

router = APIRouter()


@router.get("/catalog", tags=["catalog"], response_model=list[CatalogEntry])
def read_catalog(registry: RegistryDep) -> list[CatalogEntry]:
    """The registered jobs, with their defaults and input schema."""
    return [
        CatalogEntry(
            name=job.name,
            description=job.description,
            queue=job.defaults.queue,
            timeout=job.defaults.timeout,
            retries=job.defaults.retries,
            retry_intervals=list(job.defaults.retry_intervals),
            result_ttl=job.defaults.result_ttl,
            input_schema=job.input_model.model_json_schema(),
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
