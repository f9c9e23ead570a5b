"""What the store refuses, in its own terms: the web maps each to an HTTP status (service/web/errors.py)."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors: `detail` says what is wrong, for whoever shows it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class JobNotFoundError(StoreError):
    """No job has this id: it never existed, or its record expired."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (it never existed or its record expired)")
        self.job_id = job_id


class JobStateError(StoreError):
    """The job's state, or a change made meanwhile, does not allow what was asked (HTTP's 409)."""


class UnknownQueueError(StoreError):
    """No queue has this name (HTTP's 404)."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"no queue named {name!r}; queues are {', '.join(known)}")
        self.name = name
