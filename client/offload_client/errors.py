"""What a call can raise: one `OffloadError`, a subclass per status the API answers with."""

from __future__ import annotations

from typing import Any

import httpx


class OffloadError(Exception):
    """The API refused a call (`status_code`, its JSON `detail`), or could not be reached."""

    def __init__(self, message: str, detail: Any = None, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.response = response
        self.status_code = response.status_code if response is not None else None


class UnauthorizedError(OffloadError):
    """401: no API key, or one the server does not know."""


class ForbiddenError(OffloadError):
    """403: the key lacks the scope, or the job, the call needs."""


class NotFoundError(OffloadError):
    """404: no such job (or its record expired), no job of that name, no such queue."""


class ConflictError(OffloadError):
    """409: the job's status forbids this, or the Idempotency-Key was used for another request."""


class PayloadTooLargeError(OffloadError):
    """413: the body, or the batch, is over the server's limit."""


class ValidationError(OffloadError):
    """422: the input or an option is invalid; `errors` names each field (`loc`, `msg`, `type`)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list(self.detail) if isinstance(self.detail, list) else []


class UnavailableError(OffloadError):
    """503: the server's Redis is unavailable (enqueues were retried until the deadline)."""


class UnreachableError(OffloadError):
    """No answer: the connection failed or dropped, through every retry allowed (see `__cause__`)."""


BY_STATUS: dict[int, type[OffloadError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    503: UnavailableError,
}


def raise_for_status(response: httpx.Response) -> None:
    """Raise the typed error of a non-2xx answer, with the server's `detail`; a 2xx passes."""
    if response.is_success:
        return
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):  # not offload's JSON: a proxy's page, say
        detail = response.text
    error = BY_STATUS.get(response.status_code, OffloadError)
    raise error(f"{response.status_code} {response.reason_phrase}: {_summary(detail)}", detail, response)


def _summary(detail: Any) -> str:
    """A 422's list of fields as one line: `body.text: Field required; query.wait: ...`."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', []))}: {item.get('msg', '')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)
