"""Dependencies the routes declare: the Redis connection, the settings, the job registry.

All `async def`: FastAPI runs a plain `def` dependency in a worker thread, a hop per dependency
per request that costs far more than reading an attribute.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis

from service.catalog import Registry
from service.settings import Settings


async def get_connection(request: Request) -> Redis:
    connection: Redis = request.app.state.connection
    return connection


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


ConnectionDep = Annotated[Redis, Depends(get_connection)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
