"""How the enqueue routes answer a unique job's duplicate (service/store/unique.py), and document it."""

from __future__ import annotations

from typing import Any

from fastapi import Response, status

from service.catalog import RegisteredJob
from service.schemas import JobView

DUPLICATE_OF = "Offload-Duplicate-Of"  # single enqueue: the id of the job it got, answered 200
DUPLICATES = "Offload-Duplicates"  # batch: the places (0-based) of items that got an existing job


def mark_duplicates(response: Response, places: list[int], job_id: str | None) -> None:
    """A single duplicate is 200 (the job exists, nothing was accepted); a batch stays 202."""
    if job_id is not None:
        response.status_code = status.HTTP_200_OK
        response.headers[DUPLICATE_OF] = job_id
    else:
        response.headers[DUPLICATES] = ",".join(map(str, places))


def duplicate_responses(registered: RegisteredJob[..., Any]) -> dict[int | str, dict[str, Any]]:
    """A unique job's single enqueue may answer 200: when, and the header that says so."""
    if registered.unique is None:
        return {}
    description = (
        f"A duplicate: a job with the same {', '.join(registered.unique.by)} is still "
        f"{registered.unique.declared} (`unique_while`); this is that job, nothing was enqueued"
    )
    header = {"description": "The existing job's id", "schema": {"type": "string"}}
    return {200: {"model": JobView, "description": description, "headers": {DUPLICATE_OF: header}}}


def batch_duplicate_responses(registered: RegisteredJob[..., Any]) -> dict[int | str, dict[str, Any]]:
    """A unique job's batch answers 202 still; a header names the items that got an existing job."""
    if registered.unique is None:
        return {}
    description = (
        "Places (0-based, comma-separated) of the items that got an existing job (the same "
        f"{', '.join(registered.unique.by)}, or an earlier item's) instead of a new one"
    )
    return {202: {"headers": {DUPLICATES: {"description": description, "schema": {"type": "string"}}}}}
