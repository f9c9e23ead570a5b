"""`GET /metrics`: Prometheus' scrape, behind a bearer token when METRICS_TOKEN is set."""

from __future__ import annotations

import hashlib
import hmac

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response

from service.web.deps import ConnectionDep, SettingsDep
from service.web.metrics import Metrics

router = APIRouter()


def require_token(request: Request, settings: SettingsDep) -> None:
    """With METRICS_TOKEN set, only `Authorization: Bearer <METRICS_TOKEN>` may scrape."""
    if settings.metrics_token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = settings.metrics_token.get_secret_value()
    # Digests first: compare_digest takes the same time for any two values of one length, and
    # digests all have one length, so the time says nothing about the token's.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), hashlib.sha256(expected.encode()).digest()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


@router.get(
    "/metrics",
    tags=["health"],
    response_class=Response,
    dependencies=[Depends(require_token)],
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"description": "METRICS_TOKEN is set and the request does not carry it"},
    },
)
async def read_metrics(request: Request, connection: ConnectionDep) -> Response:
    """Prometheus metrics: jobs per queue and status, workers, job counters, HTTP requests."""
    metrics: Metrics = request.app.state.metrics
    accept = request.headers.get("accept", "")
    # Redis is read while the families are collected: in a thread, like every blocking call here.
    body, content_type = await anyio.to_thread.run_sync(metrics.render, connection, accept)
    return Response(body, headers={"Content-Type": content_type})
