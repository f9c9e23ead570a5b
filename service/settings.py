"""Configuration, read from the environment the Heroku way (one class, no module-level state)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Shortest METRICS_TOKEN accepted.
MIN_TOKEN_LENGTH = 16
# Shortest DASHBOARD_PASSWORD accepted: HTTP Basic auth has no lockout, a password is all there is.
MIN_DASHBOARD_PASSWORD_LENGTH = 12


# Shortest API key accepted.
MIN_API_KEY_LENGTH = 16
Scope = Literal["read", "enqueue", "admin"]


class ConfigError(RuntimeError):
    """The environment does not describe a runnable configuration."""


class ApiKey(BaseModel):
    """One entry of API_KEYS."""

    name: str = Field(min_length=1, max_length=64, description="Who holds it; shown in logs, never the key")
    key: SecretStr
    scopes: list[Scope] = Field(min_length=1)
    jobs: list[str] | None = Field(None, description="Job names it may enqueue; all when absent")

    @field_validator("key")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_API_KEY_LENGTH:
            raise ValueError(f"an API key needs at least {MIN_API_KEY_LENGTH} characters")
        return value


class Settings(BaseSettings):
    """Every setting is an environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description='API keys as JSON: [{"name": "ci", "key": "...", "scopes": ["enqueue"], "jobs": [...]}]',
    )
    env: str = Field("development", description="`production` makes API_KEYS mandatory")
    dyno: str | None = Field(None, description="Set by Heroku on every dyno: production")

    jobs_module: str = Field(
        "jobs", description="The module whose import registers the catalogue's jobs (`@job`): your code"
    )
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
    worker_grace_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        25.0,
        description="A stopping forking worker's running job has this long to finish, then goes back "
        "to the front of its queue (under Heroku's 30 s before SIGKILL)",
    )
    worker_nice: Annotated[int, Field(ge=0, le=19)] = Field(
        19,
        description="Workers (and their jobs) run at this CPU niceness, so that on a machine they share "
        "with the web, CPU-heavy jobs do not slow its answers; 0 for the same priority as the web",
    )
    job_idle_priority: bool = Field(
        True,
        description="A forking worker's jobs run at Linux's idle CPU priority (SCHED_IDLE): only on CPU "
        "time nothing else on the machine wants, the web's answers first; the worker itself keeps "
        "WORKER_NICE, so its heartbeats go on whatever the jobs get",
    )
    worker_kind: Literal["concurrent", "fork", "simple"] = Field(
        "concurrent",
        description="How a worker process runs its jobs when its command names no --kind: concurrent "
        "(many at once, sync ones in threads, async ones on one event loop), fork (each in a child "
        "process of its own), simple (one at a time in the worker's process)",
    )
    worker_concurrency: Annotated[int, Field(ge=1, le=1000)] = Field(
        10,
        description="Jobs a concurrent worker runs at once in one process: sync jobs in threads, async "
        "jobs on one event loop (service/worker/concurrent.py)",
    )
    worker_processes: Annotated[int, Field(ge=1, le=256)] | None = Field(
        None,
        description="Unset: one worker process of `--kind`. N: a pool of N child processes, each running "
        "many jobs in-process (one at a time; with WORKER_CONCURRENCY or WORKER_KIND=concurrent set, or "
        "--concurrency, that many at once each), restarted when they die or reach a limit below "
        "(service/worker/pool.py)",
    )
    worker_max_jobs_per_child: Annotated[int, Field(ge=1)] | None = Field(
        None, description="A pool's child is replaced by a fresh one after this many jobs; unset: never"
    )
    worker_max_memory_mb: Annotated[float, Field(gt=0)] | None = Field(
        None,
        description="A pool's child whose resident memory exceeds this after a job is replaced by a "
        "fresh one; unset: no cap",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Signs webhook deliveries (HMAC-SHA256); `callback_url` needs it"
    )
    metrics_token: SecretStr | None = Field(
        None, description="When set, GET /metrics asks for `Authorization: Bearer <token>`"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per event; json: one JSON object per line"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="The least severe log level written"
    )
    dashboard_username: SecretStr | None = Field(
        None, description="User of the dashboard at /dashboard/, with DASHBOARD_PASSWORD; unset: no dashboard"
    )
    dashboard_password: SecretStr | None = Field(
        None,
        validate_default=True,  # checked when unset too: a user without a password is a mistake
        description=f"Password of the dashboard, at least {MIN_DASHBOARD_PASSWORD_LENGTH} characters",
    )
    dashboard_read_only: bool = Field(
        False, description="The dashboard shows everything and changes nothing (its actions answer 403)"
    )

    @field_validator("metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # A short or empty token is a door left ajar (or a mistake): refuse it at startup.
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"must be at least {MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`), or unset"
            )
        return value

    # LOG_FORMAT=JSON and LOG_LEVEL=debug mean what they say.
    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("dashboard_username")
    @classmethod
    def _basic_auth_user(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # DASHBOARD_USERNAME= (empty) means unset
        if ":" in value.get_secret_value():
            raise ValueError("cannot contain ':' (HTTP Basic auth separates user and password with it)")
        return value

    @field_validator("dashboard_password")
    @classmethod
    def _with_user(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # Both or neither: half a configuration must not quietly leave the dashboard off (or open).
        password = value.get_secret_value() if value is not None else ""
        has_user = info.data.get("dashboard_username") is not None
        if has_user and not password:
            raise ValueError("DASHBOARD_USERNAME is set: set DASHBOARD_PASSWORD too, or unset both")
        if password and not has_user:
            raise ValueError("set DASHBOARD_USERNAME too (or unset both)")
        if password and len(password) < MIN_DASHBOARD_PASSWORD_LENGTH:
            raise ValueError(f"must be at least {MIN_DASHBOARD_PASSWORD_LENGTH} characters, or unset")
        return value if password else None

    @field_validator("redis_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


def is_production(settings: Settings) -> bool:
    return settings.env == "production" or settings.dyno is not None


def load_settings() -> Settings:
    """Read the settings, turning pydantic's report into one clear startup error."""
    try:
        return Settings()  # values come from the environment
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
