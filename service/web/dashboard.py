"""rq-dashboard at /dashboard/: behind HTTP Basic auth, its actions same-origin only, or read-only.

rq-dashboard 0.9.0 is a Flask blueprint. It runs here as WSGI under a2wsgi, wrapped in a small ASGI
gate that checks the credentials, refuses cross-site actions and, in read-only mode, every action.
Its Flask app (service/web/dashboard_app.py) is built when the web app starts, on the web's own
Redis client.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import cast
from urllib.parse import urlsplit

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi_typing import WSGIApp
from fastapi import FastAPI
from redis import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.catalog import Registry
from service.settings import Settings
from service.store.views import dashboard_job_page
from service.web.dashboard_app import build_flask_app

DASHBOARD_PATH = "/dashboard"
# rq-dashboard 0.9.0's page of one job, on its first (here: only) Redis instance.
JOB_PAGE = f"{DASHBOARD_PATH}/0/view/job/"
DISABLED = "the dashboard is disabled: set DASHBOARD_USERNAME and DASHBOARD_PASSWORD"
READ_ONLY = "the dashboard is read-only (DASHBOARD_READ_ONLY=true): it changes nothing"
CROSS_SITE = (
    "the dashboard's actions need an Origin or Referer header naming this site "
    "(a page of another site cannot act here with your credentials)"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# rq-dashboard acts on a GET here ("requeue all"); a link on any site could trigger it.
ACTING_GETS = re.compile(r"^/requeue/")
# On every dashboard answer: no framing by other sites (a click there would be same-origin here),
# and a Referer only towards this site (the Origin check accepts it when Origin is missing).
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class Dashboard:
    """The ASGI app at DASHBOARD_PATH: answers refusals itself, hands the rest to rq-dashboard."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        user, password = settings.dashboard_username, settings.dashboard_password
        self.credentials: tuple[bytes, bytes] | None = None
        if user is not None and password is not None:
            self.credentials = (user.get_secret_value().encode(), password.get_secret_value().encode())
        self.read_only = settings.dashboard_read_only
        # Shown in its Redis picker: the URL without its credentials or options.
        parts = urlsplit(settings.redis_url)
        self.redis_shown = parts._replace(netloc=parts.netloc.rpartition("@")[2], query="").geturl()
        self.registry = registry
        self.wsgi: WSGIMiddleware | None = None

    @property
    def job_page(self) -> str | None:
        """Where a job's page is, followed by its id; None when the dashboard is disabled."""
        return JOB_PAGE if self.credentials is not None else None

    def install(self, app: FastAPI) -> None:
        """Mount it, and let the API's job views link to it."""
        app.add_route(DASHBOARD_PATH, _to_slash, include_in_schema=False)
        app.mount(DASHBOARD_PATH, self)
        app.add_middleware(DashboardLinks, job_page=self.job_page)

    def start(self, connection: Redis) -> None:
        """Build the Flask app on the web's Redis client (called by the lifespan)."""
        if self.credentials is not None:
            flask_app = build_flask_app(connection, self.registry, self.redis_shown, read_only=self.read_only)
            self.wsgi = WSGIMiddleware(cast(WSGIApp, flask_app))  # a2wsgi types environ strictly

    def stop(self) -> None:
        if self.wsgi is not None:
            self.wsgi.executor.shutdown(wait=True)
            self.wsgi = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # a websocket: nothing here speaks it
            await send({"type": "websocket.close", "code": 1000})
            return
        request = Request(scope)
        secured = _SecuredSend(send, request.headers.get("host", ""))
        refusal = self.refusal(request)
        if refusal is None and self.wsgi is None:
            refusal = JSONResponse({"detail": "the dashboard is not started"}, status_code=503)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        # a2wsgi types ASGI messages as TypedDicts, Starlette as mappings: the same messages.
        await cast(ASGIApp, self.wsgi)(scope, receive, secured)

    def refusal(self, request: Request) -> Response | None:
        """The answer to a request the dashboard must not serve, or None to serve it."""
        if self.credentials is None:
            return JSONResponse({"detail": DISABLED}, status_code=404)
        if not self.authorized(request.headers.get("authorization", "")):
            return JSONResponse(
                {"detail": "the dashboard needs DASHBOARD_USERNAME and DASHBOARD_PASSWORD"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="offload dashboard", charset="UTF-8"'},
            )
        acting_get = request.method in SAFE_METHODS and bool(ACTING_GETS.match(_inner_path(request)))
        if request.method in SAFE_METHODS and not acting_get:
            return None
        if self.read_only:
            return JSONResponse({"detail": READ_ONLY}, status_code=403)
        if acting_get:
            return JSONResponse(
                {"detail": "this action takes a POST from the dashboard's own page"},
                status_code=405,
                headers={"Allow": "POST"},
            )
        if not _same_origin(request):
            return JSONResponse({"detail": CROSS_SITE}, status_code=403)
        return None

    def authorized(self, header: str) -> bool:
        """HTTP Basic credentials equal to the configured ones, compared in constant time."""
        assert self.credentials is not None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        # Both compared whatever the first gives: the time taken tells nothing of which was wrong.
        user_ok = hmac.compare_digest(user, self.credentials[0])
        password_ok = hmac.compare_digest(password, self.credentials[1])
        return bool(sep) and user_ok and password_ok


class DashboardLinks:
    """Sets, for each request, where the API's job views link to (read by service/store/views.py)."""

    def __init__(self, app: ASGIApp, job_page: str | None) -> None:
        self.app = app
        self.job_page = job_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = dashboard_job_page.set(self.job_page)
        try:
            await self.app(scope, receive, send)
        finally:
            dashboard_job_page.reset(token)


async def _to_slash(request: Request) -> Response:
    # Relative, unlike Starlette's own slash redirect, which names the scheme it was reached by:
    # behind a TLS-terminating router (Heroku) that is http://, and the credentials would follow.
    return RedirectResponse(f"{DASHBOARD_PATH}/", status_code=308)


class _SecuredSend:
    """Adds SECURITY_HEADERS, and makes redirects to this host relative (see `_to_slash`)."""

    def __init__(self, send: Send, host: str) -> None:
        self.send = send
        self.host = host.lower()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(name, value) for name, value in message.get("headers", [])]
            for index, (name, value) in enumerate(headers):
                if name.lower() == b"location":
                    target = urlsplit(value.decode("latin-1"))
                    if target.netloc.lower() == self.host:
                        relative = target.path + (f"?{target.query}" if target.query else "")
                        headers[index] = (name, relative.encode("latin-1"))
            message = {**message, "headers": headers + SECURITY_HEADERS}
        await self.send(message)


def _inner_path(request: Request) -> str:
    """The path below the mount point, as rq-dashboard routes it."""
    path: str = request.scope["path"]
    root: str = request.scope.get("root_path", "")
    return path[len(root) :] if path.startswith(root) else path


def _same_origin(request: Request) -> bool:
    """The request names this site as its source (Origin, else Referer) and the host it was sent to.

    Compared with the Host header, not the scheme: behind a TLS-terminating router the web sees
    http while the browser says https. A page on another host cannot forge either header.
    """
    host = request.headers.get("host", "").lower()
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    parts = urlsplit(source)
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host


# --- the Flask app ------------------------------------------------------------------------------
