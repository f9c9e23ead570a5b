"""API keys with scopes: who may read, enqueue (which jobs), or administer.

Keys come from API_KEYS (JSON). A request shows one as `Authorization: Bearer <key>` or
`X-API-Key: <key>`. Keys are compared as SHA-256 digests with `hmac.compare_digest`, against every
configured key, so the time taken says nothing about how close a guess was.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.settings import ApiKey, Scope
from service.web.errors import OffloadError

# admin may do everything; read and enqueue are granted separately.
IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "enqueue": frozenset({"enqueue"}),
    "admin": frozenset({"read", "enqueue", "admin"}),
}


@dataclass(frozen=True)
class Principal:
    """Whoever made the request: a key's name and what it may do."""

    name: str
    scopes: frozenset[str]
    jobs: frozenset[str] | None  # None: any job

    def may_enqueue(self, job_name: str) -> bool:
        return "enqueue" in self.scopes and (self.jobs is None or job_name in self.jobs)


ANONYMOUS = Principal(name="anonymous", scopes=IMPLIED["admin"], jobs=None)


class NotAuthenticatedError(OffloadError):
    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer realm="offload"'}


class ForbiddenError(OffloadError):
    status_code = 403


class KeyRing:
    """The configured keys by digest. Empty: keys are off (development only, see settings)."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._entries = [(_digest(entry.key.get_secret_value()), entry) for entry in keys]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def find(self, presented: str) -> Principal | None:
        digest = _digest(presented)
        found: ApiKey | None = None
        for known, entry in self._entries:  # no early exit: every key is compared
            if hmac.compare_digest(known, digest):
                found = entry
        if found is None:
            return None
        granted = frozenset().union(*(IMPLIED[scope] for scope in found.scopes))
        return Principal(found.name, granted, frozenset(found.jobs) if found.jobs is not None else None)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key")


# `async def`, like every dependency here: FastAPI runs a plain `def` one in a worker thread, a hop
# per dependency per request that costs more than the few microseconds of work they do.
async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    header_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    ring: KeyRing = request.app.state.keys
    if not ring:
        return ANONYMOUS
    presented = credentials.credentials if credentials is not None else header_key
    if not presented:
        raise NotAuthenticatedError("an API key is required: `Authorization: Bearer <key>` or `X-API-Key`")
    principal = ring.find(presented)
    if principal is None:
        raise NotAuthenticatedError("this API key is not valid")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def authenticate_request(request: Request) -> Principal:
    """`authenticate` for a handler that resolves no dependencies: the same schemes, the same errors."""
    return await authenticate(request, await bearer(request), await api_key_header(request))


def check_may_enqueue(principal: Principal, name: str) -> Principal:
    """The principal, if it may enqueue the job `name`; else a 403 saying why."""
    if "enqueue" not in principal.scopes:
        raise ForbiddenError(f"this API key ({principal.name}) lacks the 'enqueue' scope")
    if not principal.may_enqueue(name):
        raise ForbiddenError(f"this API key ({principal.name}) may not enqueue {name!r}")
    return principal


def may_enqueue_job(name: str) -> Any:
    """A dependency that lets through only keys that may enqueue the job `name`."""

    async def check(principal: PrincipalDep) -> Principal:
        return check_may_enqueue(principal, name)

    return Depends(check)


def require(scope: Scope) -> Any:
    """A dependency that lets through only keys with `scope`."""

    async def check(principal: PrincipalDep) -> Principal:
        if scope not in principal.scopes:
            raise ForbiddenError(f"this API key ({principal.name}) lacks the {scope!r} scope")
        return principal

    return Depends(check)
