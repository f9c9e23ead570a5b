"""The API's response shapes (inputs are each job's own model, derived in jobs/registry.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class JobError(BaseModel):
    type: str = Field(description="The exception's class name, e.g. ValueError or JobTimeoutException")
    message: str


class JobProgress(BaseModel):
    fraction: float = Field(ge=0, le=1)
    message: str = ""


class JobView(BaseModel):
    """A job as the API shows it."""

    id: str
    name: str | None = Field(description="The registered job name; null for jobs not in the catalogue")
    status: str = Field(
        description="RQ's status: queued, scheduled, deferred, started, finished, failed, stopped, canceled"
    )
    queue: str
    input: dict[str, Any]
    result: Any = Field(None, description="The return value, once finished")
    error: JobError | None = Field(None, description="Why it failed, once failed or stopped")
    progress: JobProgress | None = None
    created_at: datetime | None
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    worker: str | None
    timeout: int | None = Field(description="Seconds a run may take before the worker kills it")
    retries_left: int | None
    url: str


class CatalogEntry(BaseModel):
    name: str
    description: str
    queue: str
    timeout: int
    retries: int
    retry_intervals: list[int]
    result_ttl: int
    input_schema: dict[str, Any]


class Health(BaseModel):
    status: str
    redis: str | None = None
