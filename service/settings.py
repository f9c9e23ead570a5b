"""Configuration, read from the environment the Heroku way (one class, no module-level state)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(RuntimeError):
    """The environment does not describe a runnable configuration."""


class Settings(BaseSettings):
    """Every setting is an environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    redis_url: str = Field(description="Redis to use: redis://, rediss:// (TLS) or unix://")
    redis_tls_verify: bool = Field(
        True, description="Verify the server certificate of a rediss:// URL (false for Heroku Redis)"
    )
    redis_timeout: Annotated[float, Field(gt=0, le=60)] = Field(
        2.0, description="Seconds to wait for Redis before answering 503"
    )
    max_body_bytes: Annotated[int, Field(ge=1024)] = Field(
        1_048_576, description="Largest request body accepted; larger is 413"
    )
    max_wait_seconds: Annotated[float, Field(ge=0, le=600)] = Field(
        25.0, description="Longest `?wait=` a request may ask for (Heroku's router cuts at 30 s)"
    )
    max_stream_seconds: Annotated[float, Field(gt=0, le=24 * 3600)] = Field(
        300.0, description="Longest a `GET /jobs/{id}/events` stream stays open; clients reconnect"
    )
    max_batch_size: Annotated[int, Field(ge=1, le=100_000)] = Field(
        1000, description="Most jobs one batch request may enqueue; more is 413"
    )
    idempotency_ttl: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = Field(
        24 * 3600, description="Seconds an Idempotency-Key is remembered"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Signs webhook deliveries (HMAC-SHA256); `callback_url` needs it"
    )

    @field_validator("redis_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


def load_settings() -> Settings:
    """Read the settings, turning pydantic's report into one clear startup error."""
    try:
        return Settings()  # values come from the environment
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
