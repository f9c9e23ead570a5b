"""Redis connections for the web process and the workers, made on demand, never at import."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.settings import Settings


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


def connect(settings: Settings) -> redis.Redis:
    """A client that fails fast: one immediate retry (for a connection Redis closed), no backoff."""
    return redis.Redis.from_url(settings.redis_url, retry=Retry(NoBackoff(), 1), **_options(settings))
