"""Redis connections for the web process and the workers, made on demand, never at import."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from service.settings import Settings

# Longest pause between a worker's attempts to reach Redis again (its recovery delay).
PATIENT_BACKOFF_CAP = 1.0


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
    return redis.Redis.from_url(settings.redis_url, retry=retry, **_options(settings))


def connect_async(settings: Settings) -> redis.asyncio.Redis:
    """An asyncio Redis client for the web's streams, failing fast like `connect`'s.

    A stream waits on Redis for minutes; on the event loop it holds no thread while it does.
    """
    return redis.asyncio.Redis.from_url(
        settings.redis_url, retry=AsyncRetry(NoBackoff(), 1), **_options(settings)
    )
